"""Run guests' libvirt work on the shared call pool, a few per host at once, each host within its deadline.

The engine's only database thread reads finished guests from :meth:`Lanes.batches` and commits several in
one short transaction. A host whose work outlives its deadline (it hangs, and keepalive has not noticed yet)
is given up: its guests in flight come back as ``unknown`` (writes may have been sent), those still waiting
as ``untouched``, at once, so the other hosts' guests are recorded in their normal time. The stuck calls are
left to return on their own; the host gets no further work from this run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Generic, TypeVar

from hosts.changes.guest import Outcome
from hosts.libvirt import connection, pools
from hosts.libvirt.connection import IN_FLIGHT_PER_CONNECTION
from hosts.libvirt.deadlines import said
from hosts.models import ChangeTarget

# Guests of one host whose libvirt calls are in flight at once (see hosts.libvirt.connection).
IN_FLIGHT_PER_HOST = IN_FLIGHT_PER_CONNECTION

R = TypeVar("R", bound=Hashable)
Finished = tuple[R, ChangeTarget, Outcome]


class Lanes(Generic[R]):
    """Guests' work for several hosts (one run each), in parallel across hosts, bounded per host."""

    def __init__(self, work: Callable[[R, ChangeTarget], Outcome]) -> None:
        self._work = work
        self._waiting: dict[R, list[ChangeTarget]] = {}
        self._running: dict[Future[Outcome], tuple[R, ChangeTarget]] = {}
        self._in_flight: dict[R, int] = {}
        self._deadline: dict[R, tuple[float, float, str]] = {}  # run -> (monotonic deadline, seconds, host)
        self._uri: dict[R, str] = {}
        self._began = time.time()
        self.left: dict[R, int] = {}

    def add(self, run: R, targets: list[ChangeTarget], *, seconds: float, host: str, uri: str) -> None:
        """Queue a host's guests; the host has ``seconds`` from now for all of them."""
        self._uri[run] = uri
        self._waiting[run] = list(reversed(targets))  # popped from the end, in order
        self._in_flight[run] = 0
        self.left[run] = len(targets)
        self._deadline[run] = (time.monotonic() + seconds, seconds, host)

    def _feed(self, run: R) -> None:
        waiting = self._waiting[run]
        while waiting and self._in_flight[run] < IN_FLIGHT_PER_HOST:
            target = waiting.pop()
            self._in_flight[run] += 1
            self._running[pools.call_pool().submit(self._work, run, target)] = (run, target)

    @property
    def running(self) -> bool:
        """Whether some guest's work still runs or waits: another batch will come."""
        return bool(self._running) or any(self._waiting.values())

    def _overdue(self) -> list[Finished[R]]:
        """Give up the hosts past their deadline: their guests' outcomes, made up now."""
        now = time.monotonic()
        late = {run for run, (deadline, _s, _h) in self._deadline.items() if now >= deadline and self.left[run]}
        out: list[Finished[R]] = []
        for run in late:
            _deadline, seconds, host = self._deadline[run]
            error = f"{host} did not answer within {said(seconds)}"
            for future, (owner, target) in list(self._running.items()):
                if owner == run:
                    del self._running[future]
                    connection.mark_stuck(self._uri[run], future, self._began)
                    out.append((run, target, Outcome(False, error=error, unknown=True)))
            out += [(run, target, Outcome(False, error=error, untouched=True)) for target in self._waiting[run]]
            self._waiting[run] = []
            self._in_flight[run] = 0
            self.left[run] = 0
        return out

    def _next_deadline(self) -> float | None:
        pending = [deadline for run, (deadline, _s, _h) in self._deadline.items() if self.left[run]]
        return max(0.0, min(pending) - time.monotonic()) if pending else None

    def batches(self, every: float = 0.0) -> Iterator[list[Finished[R]]]:
        """Yield what finished, at most one batch per ``every`` seconds (the last one at once)."""
        for run in self._waiting:
            self._feed(run)
        batch: list[Finished[R]] = []
        last = time.monotonic()
        while self.running:
            timeouts = [
                t for t in (self._next_deadline(), last + every - time.monotonic() if batch else None) if t is not None
            ]
            timeout = max(0.0, min(timeouts)) if timeouts else None
            done, _pending = wait(self._running, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                run, target = self._running.pop(future)
                self._in_flight[run] -= 1
                self.left[run] -= 1
                batch.append((run, target, future.result()))
            batch += self._overdue()
            for run in {run for run, _t, _o in batch}:
                self._feed(run)  # at once: the lanes stay full while the batch waits
            if batch and (not self.running or time.monotonic() - last >= every):
                yield batch
                batch, last = [], time.monotonic()
