"""The shared libvirt thread pools: bounded fan-out, errors after every stripe stops, no database use."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth.models import User

from hosts.libvirt import pools


def test_bounded_map_keeps_order_and_at_most_n_in_flight() -> None:
    lock = threading.Lock()
    running, most = 0, 0

    def slow_square(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        return n * n

    assert pools.bounded_map(slow_square, list(range(12)), 3) == [n * n for n in range(12)]
    assert most == 3  # 12 items, 3 stripes: exactly 3 at once, never more
    assert pools.bounded_map(slow_square, [], 3) == []


def test_bounded_map_raises_the_first_error_once_every_stripe_has_stopped() -> None:
    done: list[int] = []

    def work(n: int) -> int:
        if n == 0:
            raise ValueError("item 0 failed")
        time.sleep(0.005)
        done.append(n)
        return n

    with pytest.raises(ValueError, match="item 0 failed"):
        pools.bounded_map(work, list(range(6)), 2)
    # Stripe 0 (items 0, 2, 4) stopped at its error; stripe 1 (1, 3, 5) ran to its end before the raise.
    assert sorted(done) == [1, 3, 5]


def test_pool_threads_refuse_the_database(db: None) -> None:
    """Only the thread that hands out libvirt work touches the database; a query from a pool thread is a bug."""
    assert User.objects.count() == 0  # this thread may
    with pytest.raises(pools.DatabaseFromPoolThread, match="pool thread tried to use the database"):
        pools.call_pool().submit(User.objects.count).result()
    with pytest.raises(pools.DatabaseFromPoolThread):
        pools.host_pool().submit(lambda: list(User.objects.all())).result()


def test_a_forked_child_gets_pools_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads do not survive fork: a pool made by another process id is not handed out."""
    parent = pools.call_pool()
    assert pools.call_pool() is parent
    monkeypatch.setattr(pools.os, "getpid", lambda: -1)  # as a forked child sees it: not the pool's owner
    child = pools.call_pool()
    assert child is not parent
    assert child.submit(lambda: 7).result() == 7
