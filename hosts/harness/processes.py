"""Processes of the local fleet, found and ended by pid: never by a name pattern.

A process is identified by its pid and start time (so a pid reused by an unrelated process is never
signalled), stopped with SIGTERM then SIGKILL within bounded waits; a qemu process is recognised as a given
guest's by its ``-name guest=<name>`` argument. Harness code only, not the product.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """Return /proc/PID/stat's fields after the command name (state first), or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def pid_alive(pid: int) -> bool:
    fields = stat_fields(pid)
    # A zombie (state Z) has exited; only its parent has not collected it yet.
    return fields is not None and fields[0] != "Z"


@dataclass(frozen=True)
class Proc:
    """A process known by pid and start time, so a pid the kernel has since given to another is never signalled."""

    pid: int
    start: int  # clock ticks after boot (/proc/PID/stat field 22)
    what: str = ""

    @classmethod
    def of(cls, pid: int, what: str = "") -> Proc | None:
        fields = stat_fields(pid)
        return None if fields is None else cls(pid, int(fields[19]), what)

    def state(self) -> str | None:
        """The process's state letter (``Z`` for a zombie), or None once it is gone or the pid was reused."""
        fields = stat_fields(self.pid)
        if fields is None or int(fields[19]) != self.start:
            return None
        return fields[0]

    def alive(self) -> bool:
        return self.state() not in (None, "Z")

    def send(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


def wait_gone(procs: Iterable[Proc], timeout: float) -> list[Proc]:
    """Wait up to ``timeout`` s for these processes to exit; return those still alive."""
    left = [proc for proc in procs if proc.alive()]
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [proc for proc in left if proc.alive()]
    return left


def end_processes(procs: Iterable[Proc], term_wait: float = 10.0, kill_wait: float = 5.0) -> list[Proc]:
    """SIGTERM these processes, SIGKILL those still there after ``term_wait`` s; return any that survived both.

    A stopped process (SIGSTOP) is continued too, so it acts on the SIGTERM instead of holding it.
    """
    left = [proc for proc in procs if proc.alive()]
    for proc in left:
        proc.send(signal.SIGTERM)
        if proc.state() in ("T", "t"):
            proc.send(signal.SIGCONT)
    left = wait_gone(left, term_wait)
    for proc in left:
        proc.send(signal.SIGKILL)
    return wait_gone(left, kill_wait)


def port_open(port: int) -> bool:
    """Return whether something accepts TCP connections on this loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def is_qemu_of(pid: int, guest: str) -> bool:
    """Return whether process ``pid`` is the qemu of guest ``guest`` (libvirt passes ``-name guest=NAME,...``)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    wanted = f"guest={guest}".encode()
    return any(arg == wanted or arg.startswith(wanted + b",") for arg in args)


def bounded(work: Callable[[], list[str]], timeout: float) -> list[str]:
    """Run ``work`` (libvirt calls) in a thread of its own and wait at most ``timeout`` s for its answer.

    A thread blocked inside libvirt cannot be interrupted; it is a daemon thread left to finish on its own.
    Returns ``work``'s problems, or one line saying why there is no answer.
    """
    outcome: list[list[str]] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:  # reported, not raised: the processes are ended by pid next anyway
            outcome.append([f"could not remove the guests through libvirt: {getattr(exc, 'message', exc)}"])

    thread = threading.Thread(target=run, name="fleet-down", daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else [f"libvirt did not answer within {timeout:g} s"]
