"""Provide the setup, process and fleet helpers that every benchmark in this directory uses.

The benchmarks (inventory.py, apply.py, stats.py) each run against their own private fleet, Redis and
throwaway database, and need the same plumbing to do so: a throwaway Django environment, a time budget,
processes started in their own session and stopped by pid, a bounded virsh runner, guest trimming and
argument types. Keeping one copy here means a fix to any of them reaches every benchmark. The scripts are
run by path, so this directory is on ``sys.path`` and they import it as ``common``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from hosts.harness.fleet import Fleet

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_REPEAT = 10
REDIS_ARGS = ("redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to (a command failed, a check did not hold)."""


# --- arguments ----------------------------------------------------------------------------------------


def sizes_type(most: int, step: int = 1, *, allow_empty: bool = False) -> Callable[[str], list[int]]:
    """Return an argparse type for a comma-separated list of guest counts: multiples of ``step`` up to ``most``."""

    def sizes(text: str) -> list[int]:
        try:
            values = sorted({int(part) for part in text.split(",") if part.strip()})
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
        if not values and allow_empty:
            return []
        if not values or values[0] < step or values[-1] > most or any(v % step for v in values):
            if step == 1:
                raise argparse.ArgumentTypeError(f"sizes must be between 1 and {most}")
            raise argparse.ArgumentTypeError(f"sizes must be multiples of {step} between {step} and {most}")
        return values

    return sizes


def _repeat(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(f"repeat must be between 1 and {MAX_REPEAT}")
    return value


def add_repeat_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=_repeat, default=3, help="timed runs per side and size (3)")


# --- the throwaway environment ------------------------------------------------------------------------


def bench_env(var_dir: Path, redis_port: int | None = None) -> dict[str, str]:
    """The environment that points isoweb at a throwaway var directory, SQLite database and (if given) Redis."""
    env = {
        "DJANGO_SETTINGS_MODULE": "isoweb.settings",
        "ISOWEB_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'bench.sqlite3'}",
    }
    if redis_port is not None:
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    return env


def setup_django(env: dict[str, str]) -> None:
    """Put ``env`` into this process's environment, then start Django and migrate the throwaway database."""
    os.environ.update(env)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def run_in_sandbox(prefix: str, body: Callable[[Path], None], redis_port: int | None = None) -> str:
    """Run ``body`` in a throwaway var directory with Django set up; return its error message ('' if none).

    The directory is removed afterwards, whatever happened.
    """
    var_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        setup_django(bench_env(var_dir, redis_port))
        from hosts.harness.fleet import FleetError
        from hosts.libvirt.errors import VirtError

        try:
            body(var_dir)
        except (BenchError, FleetError) as exc:
            return str(exc)
        except VirtError as exc:
            return exc.message
        return ""
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


class Deadline:
    """The time budget of the whole run, checked between measurements."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise BenchError(f"time budget exhausted before {what}")


# --- processes ----------------------------------------------------------------------------------------


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise BenchError(f"{what} did not come up within {timeout:g} s")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process this benchmark started (in its own session) and its children, by its id."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Start a private, non-persistent Redis on ``port`` (which must be free) and wait until it answers."""
    if port_answers(port):
        raise BenchError(f"something already listens on port {port}; the benchmark needs its own Redis")
    workdir.mkdir(parents=True, exist_ok=True)
    return start_serving([*REDIS_ARGS, "--port", str(port), "--dir", str(workdir)], port, 10, "redis-server")


def start_serving(args: list[str], port: int, timeout: float, what: str, **popen: Any) -> subprocess.Popen[bytes]:
    """Start a server in its own session, quiet, and return it once ``port`` answers; stop it and raise if it
    exits first or does not answer within ``timeout`` seconds."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **popen)
    try:
        wait_for(lambda: proc.poll() is not None or port_answers(port), timeout, what)
    except BenchError:
        stop_process(proc)
        raise
    if proc.poll() is not None:
        raise BenchError(f"{what} exited at start")
    return proc


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_daphne(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """Serve isoweb with Daphne on a free loopback port (in its own session); return it once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "isoweb.asgi:application"]
    return start_serving(args, port, 30, "Daphne", cwd=REPO_ROOT, env={**os.environ, **env}), port


def viewer_session(username: str = "bench") -> str:
    """The session id of a logged-in user with the viewer role (Django must be set up)."""
    from django.contrib.auth.models import User
    from django.test import Client

    from hosts.roles import VIEWER, ensure_role_groups

    user = User.objects.filter(username=username).first() or User.objects.create_user(username)
    user.groups.add(ensure_role_groups()[VIEWER])
    web = Client()
    web.force_login(user)
    return str(web.cookies["sessionid"].value)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank), NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def virsh(uri: str, args: tuple[str, ...], timeout: float) -> str:
    """Run one virsh command as its own process, as a shell script would, and return its output."""
    try:
        result = subprocess.run(
            ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"virsh {' '.join(args)} took more than {timeout:g} s") from exc
    if result.returncode != 0:
        raise BenchError(f"virsh {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


# --- the fleet ----------------------------------------------------------------------------------------


def bench_fleet(prefix: str, base_port: int, hosts: int, per_host: int) -> Fleet:
    """The benchmark's own fleet: ``hosts`` daemons from ``base_port`` up, ``per_host`` tiny guests each."""
    from hosts.harness.fleet import Fleet

    return Fleet(
        prefix=prefix,
        hosts=hosts,
        base_port=base_port,
        state_dir=REPO_ROOT / "var" / f"fleet-{prefix}",
        guests=(),
        burner_on=(),
        extra_guests=per_host,
    )


def trim_guests(fleet: Fleet, keep: bool = True) -> None:
    """Remove this fleet's guests that are not wanted (left over from an earlier, larger, aborted run)."""
    from hosts.harness.guests import destroy_and_undefine, list_domain_names

    for member in fleet.members:
        wanted = set(member.guest_names) if keep else set()
        for name in list_domain_names(member.uri):
            if name.startswith(f"{fleet.prefix}{member.index + 1}-") and name not in wanted:
                destroy_and_undefine(member.uri, name)


def remove_fleet(fleet: Fleet) -> None:
    """Remove every guest of the benchmark's prefix (warning if some stay), then stop the fleet's daemons."""
    from hosts.libvirt.errors import VirtError

    try:
        if fleet.members[0].is_running():
            trim_guests(fleet, keep=False)
    except VirtError as exc:
        print(f"warning: could not remove every bench guest: {exc.message}", file=sys.stderr)
    fleet.down()


# --- results ------------------------------------------------------------------------------------------


class Timed(Protocol):
    @property
    def seconds(self) -> float: ...


R = TypeVar("R", bound=Timed)


def median_run(runs: list[R]) -> R:
    """Return the run with the median time (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run.seconds)
    return ordered[(len(ordered) - 1) // 2]


# --- a quiet test bed -------------------------------------------------------------------------------------

IDLE_PERCENT_PER_GUEST, SETTLE_SECONDS = 2.0, 300


def _guest_cpu(uris: list[str], seconds: float) -> tuple[float, int]:
    """The guests' total CPU use over ``seconds``, in % of one CPU, and how many guests run."""
    from hosts.libvirt.stats import fetch_cpu_stats
    from hosts.live.rates import host_load

    before = [fetch_cpu_stats(uri) for uri in uris]
    time.sleep(seconds)
    total, count = 0.0, 0
    for uri, first in zip(uris, before, strict=True):
        second = fetch_cpu_stats(uri)
        load = host_load(first, second, max_dt=10 * seconds)
        if load is not None:
            total += sum(guest.total for guest in load.guests.values())
        count += len(second.guests)
    return total, count


def settle(uris: list[str], deadline: Deadline) -> None:
    """Wait until freshly started guests have booted and idle (at most ``SETTLE_SECONDS``).

    A guest uses a whole CPU while it boots; measured during that storm, the latency would be the test
    bed's boot load on 2 shared cores, not the collector's. Idle, these guests use about 1 % of a CPU each.
    """
    started = time.monotonic()
    while True:
        used, count = _guest_cpu(uris, 2.0)
        if used <= IDLE_PERCENT_PER_GUEST * max(count, 1):
            print(f"guests idle after {time.monotonic() - started:.0f} s: {count} use {used:.0f} % of one CPU")
            return
        if time.monotonic() - started > SETTLE_SECONDS:
            print(f"guests still busy after {SETTLE_SECONDS} s ({used:.0f} % of one CPU); measuring anyway")
            return
        deadline.check("waiting for the guests to boot")


# --- a minimal websocket client (for a client process; no extra dependency) ----------------------------


def ws_open(port: int, path: str, cookie: str, timeout: float = 30.0) -> tuple[socket.socket, bytes]:
    """Open a websocket to Daphne on the loopback with a session cookie; return the socket and any bytes
    already received after the handshake. Raises RuntimeError if the server refuses."""
    import base64

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: {cookie}\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"{path}: connection closed during the handshake")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"{path}: refused: {head[:200]!r}")
    return sock, rest


def _ws_send(sock: socket.socket, opcode: int, payload: bytes) -> None:
    mask = os.urandom(4)
    header = bytes([0x80 | opcode, 0x80 | len(payload)])  # control frames only: payload < 126
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def ws_messages(sock: socket.socket, buf: bytes, until: float) -> Iterator[tuple[float, bytes]]:
    """Yield ``(time.time() received, message)`` for each text message until ``until`` (epoch seconds), the
    server closing, or a read error; pings are answered."""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            sock.settimeout(max(0.1, until - time.time()))
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    message = b""
    while time.time() < until:
        try:
            b0, b1 = need(2)
            length = b1 & 0x7F
            if length == 126:
                length = int.from_bytes(need(2), "big")
            elif length == 127:
                length = int.from_bytes(need(8), "big")
            payload = need(length)
        except (TimeoutError, EOFError, OSError):
            return
        opcode = b0 & 0x0F
        if opcode == 9:
            _ws_send(sock, 10, payload)
        elif opcode == 8:
            return
        elif opcode in (0, 1):
            message += payload
            if b0 & 0x80:
                yield time.time(), message
                message = b""


# --- Celery processes -----------------------------------------------------------------------------------

WORKER_ARGS = ("-m", "celery", "-A", "isoweb", "worker", "--loglevel", "INFO", "--without-mingle", "--without-gossip")


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a process's log, for an error message."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def celery_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``python <args>`` (a Celery worker or beat) in a session of its own, logging to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_worker(env: dict[str, str], concurrency: int, log_path: Path, name: str) -> subprocess.Popen[bytes]:
    """Start a real Celery worker and wait until it answers a ping; raise BenchError if it does not."""
    hostname = f"{name}-{os.getpid()}@localhost"
    proc = celery_process([*WORKER_ARGS, "--concurrency", str(concurrency), "--hostname", hostname], env, log_path)
    from isoweb.celery import app

    def ready() -> bool:
        return proc.poll() is not None or bool(app.control.ping(destination=[hostname], timeout=0.5))

    try:
        wait_for(ready, 60, "the Celery worker")
    except BenchError:
        stop_process(proc)
        raise
    if proc.poll() is not None:
        raise BenchError(f"the Celery worker exited at start:\n{log_tail(log_path)}")
    return proc
