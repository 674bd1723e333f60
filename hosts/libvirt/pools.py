"""The process's shared thread pools for libvirt work (libvirt calls block in C with the GIL released).

The pools live as long as the process, so a sync or an apply does not start and join threads of its own
every time: on a 2-core host, starting a dozen threads cost several milliseconds of a 40 ms apply.

There are two, so that work which waits on other work can never starve it:

- ``host_pool()`` runs one host's whole piece of work (say, reading its inventory), which may hand calls to
  the other pool and wait for them;
- ``call_pool()`` runs leaf work only: single libvirt calls, or one guest's calls one after the other. Work
  on it never waits on a pool.

Pool threads never touch the database: the thread that hands them work owns it (one writer, short
transactions, no connection per pool thread left open). Each pool thread refuses queries, so breaking
that rule fails loudly. A forked child (a Celery prefork worker) makes its own pools: threads do not
survive fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

HOST_THREADS = 8  # hosts whose work runs at once; more wait their turn
CALL_THREADS = 32  # leaf calls at once, over every host

_lock = threading.Lock()
_pools: dict[str, tuple[int, ThreadPoolExecutor]] = {}


class DatabaseFromPoolThread(RuntimeError):
    """Work on a libvirt pool thread used the database."""


def _refuse_query(_execute: Callable[..., Any], sql: str, *_args: Any) -> Any:
    raise DatabaseFromPoolThread(f"a libvirt pool thread tried to use the database: {sql[:120]}")


def _no_database() -> None:
    from django.conf import settings
    from django.db import connections

    if settings.configured:
        for connection in connections.all():  # this thread's own connection objects
            connection.execute_wrappers.append(_refuse_query)


def _pool(name: str, size: int) -> ThreadPoolExecutor:
    pid = os.getpid()
    with _lock:
        owner, pool = _pools.get(name, (0, None))
        if pool is None or owner != pid:
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"isoweb-{name}", initializer=_no_database)
            _pools[name] = (pid, pool)
        return pool


def host_pool() -> ThreadPoolExecutor:
    """Threads for one host's work each; it may wait on ``call_pool`` work."""
    return _pool("host", HOST_THREADS)


def call_pool() -> ThreadPoolExecutor:
    """Threads for leaf libvirt work, which never waits on a pool."""
    return _pool("call", CALL_THREADS)


def bounded_map(fn: Callable[[T], R], items: Sequence[T], in_flight: int) -> list[R]:
    """``[fn(item) for item in items]`` on the call pool, at most ``in_flight`` of them running at once.

    The items are dealt into ``in_flight`` stripes, each run in order on one thread (a stripe stops at its
    first exception). Once every stripe has stopped, the first exception, if any, is raised.
    """
    if not items:
        return []
    stripes = [list(range(start, len(items), in_flight)) for start in range(min(in_flight, len(items)))]

    def run(indexes: list[int]) -> list[tuple[int, R]]:
        return [(i, fn(items[i])) for i in indexes]

    futures = [call_pool().submit(run, indexes) for indexes in stripes]
    results: dict[int, R] = {}
    error: BaseException | None = None
    for future in futures:
        try:
            results.update(future.result())
        except Exception as exc:  # re-raised below, once every stripe has stopped
            error = error or exc
    if error is not None:
        raise error
    return [results[i] for i in range(len(items))]
