"""A private PostgreSQL server for the tests: its own data directory, port and socket directory, stopped by pid.

Debian's ``postgresql`` package provides the server binaries (``/usr/lib/postgresql/<version>/bin``) without
the cluster its service would run; this makes a throw-away cluster with ``initdb`` in a temporary directory,
listening on 127.0.0.1 and a port of its own only (its Unix socket in that directory, not in the shared
``/var/run/postgresql``), with a random password for the one superuser the tests connect as. PostgreSQL
refuses to run as root: run as root, the cluster belongs to, and runs as, the ``postgres`` user the package
creates. Durability is traded for speed (``fsync=off``): the data dies with the run anyway.

``python -m hosts.harness.postgres -- CMD ...`` runs CMD with ``DATABASE_URL`` pointing at a fresh server and
stops the server afterwards; ``isoweb.settings_test`` starts one the same way when ``ISOWEB_TEST_DB=postgres``.
Harness code only, not the product.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hosts.harness.processes import Proc, port_open, wait_gone

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
DEFAULT_PORT = 5439
START_TIMEOUT = 60.0  # initdb and the first start on a loaded 2-core machine take a few seconds; allow plenty
STOP_TIMEOUT = 30.0
# Settings for a disposable test cluster: nothing needs to survive a crash, so skip the disk flushes.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_min_messages": "warning",
    "log_lock_waits": "on",
}


class PostgresError(RuntimeError):
    """The test server could not be started (what went wrong and where its log is)."""


def _run_as() -> pwd.struct_passwd | None:
    """The user the server runs as: ``postgres`` when we are root (PostgreSQL refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresError(
            "run as root, the test PostgreSQL needs the 'postgres' user (apt-get install postgresql)"
        ) from exc


@dataclass
class PostgresServer:
    """One private PostgreSQL cluster: ``start()`` makes and starts it, ``stop()`` stops it by pid and deletes it."""

    port: int = DEFAULT_PORT
    bin_dir: Path = Path(DEFAULT_BIN)
    log_path: Path | None = None
    user: str = "isoweb"
    database: str = "isoweb"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    workdir: Path | None = None
    proc: Proc | None = None
    _popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgres://{quote(self.user)}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{self.database}"

    def _popen_kwargs(self) -> dict[str, Any]:
        owner = _run_as()
        if owner is None:
            return {}
        return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Create the cluster and start the server; return once it accepts connections (or raise within ``timeout``)."""
        if port_open(self.port):
            raise PostgresError(
                f"port {self.port} is already taken (a test PostgreSQL left running? its pid is the first line of "
                "postmaster.pid in /tmp/isoweb-pg-*/data); set ISOWEB_TEST_POSTGRES_PORT to a free port"
            )
        for tool in ("initdb", "postgres"):
            if not (self.bin_dir / tool).exists():
                raise PostgresError(f"{self.bin_dir / tool} not found: apt-get install postgresql")
        deadline = time.monotonic() + timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="isoweb-pg-"))
        owner = _run_as()
        if owner is not None:
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
        data = self.workdir / "data"
        pwfile = self.workdir / "pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.password + "\n")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - the server's life
        try:
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    *("-D", str(data), "-U", self.user, f"--pwfile={pwfile}"),
                    *("--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-sync"),
                    "--locale=C.UTF-8",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=max(deadline - time.monotonic(), 1.0),
                cwd=self.workdir,
                **self._popen_kwargs(),
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            self._remove_workdir()
            raise PostgresError(f"initdb failed ({exc}); see {self.log_path}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        options = [arg for name, value in SERVER_SETTINGS.items() for arg in ("-c", f"{name}={value}")]
        self._popen = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.workdir), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C meant for the tests does not reach it; stop() ends it
            **self._popen_kwargs(),
        )
        self.proc = Proc.of(self._popen.pid, "postgres")
        self._watch_owner()
        if log is not subprocess.DEVNULL:
            log.close()  # type: ignore[union-attr]
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _watch_owner(self) -> None:
        """Start a watchdog that stops the server and deletes its cluster if this process dies without doing so
        (a test run killed by SIGTERM or SIGKILL runs no exit handler): no server is left holding the port."""
        assert self.proc is not None and self.workdir is not None
        owner = Proc.of(os.getpid(), "owner")
        assert owner is not None
        watched = (owner.pid, owner.start, self.proc.pid, self.proc.start, self.workdir)
        subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, *map(str, watched)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": os.environ.get("PATH", "")},
        )

    def _wait_ready(self, deadline: float) -> None:
        import psycopg

        while True:
            if self._popen is not None and self._popen.poll() is not None:
                raise PostgresError(
                    f"postgres exited at start with status {self._popen.returncode}; see {self.log_path}"
                )
            try:
                with psycopg.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user=self.user,
                    password=self.password,
                    dbname="postgres",
                    connect_timeout=2,
                    autocommit=True,
                ) as conn:
                    conn.execute("SET statement_timeout = '10s'")
                    conn.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(f"postgres did not accept connections in time: {exc}") from exc
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (fast shutdown: SIGINT, then SIGQUIT, then SIGKILL) and delete its cluster."""
        if self.proc is not None:
            for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                self.proc.send(sig)
                if self._popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._popen.wait(timeout=wait)
                if not wait_gone([self.proc], 0.1):
                    break
            self.proc = None
        self._remove_workdir()

    def _remove_workdir(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


# The watchdog: polls its owner (pid and start time) and the server; once the owner is gone while the server
# still runs, it stops the server as stop() would and deletes the cluster. It exits as soon as the server does.
_WATCHDOG = """
import shutil, signal, sys, time
from hosts.harness.processes import Proc, wait_gone
owner, server = (Proc(int(sys.argv[i]), int(sys.argv[i + 1])) for i in (1, 3))
while server.alive() and owner.alive():
    time.sleep(0.5)
if server.alive():
    for sig, wait in ((signal.SIGINT, 30.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        server.send(sig)
        if not wait_gone([server], wait):
            break
    shutil.rmtree(sys.argv[5], ignore_errors=True)
"""


def server_from_environment() -> PostgresServer:
    """A server on the tests' port (``ISOWEB_TEST_POSTGRES_PORT``), logging under ``ISOWEB_ARTIFACTS``."""
    artifacts = Path(os.environ.get("ISOWEB_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    return PostgresServer(
        port=int(os.environ.get("ISOWEB_TEST_POSTGRES_PORT", DEFAULT_PORT)),
        bin_dir=Path(os.environ.get("ISOWEB_POSTGRES_BIN", DEFAULT_BIN)),
        log_path=artifacts / "postgres.log",
    )


def start_for_this_process() -> PostgresServer:
    """Start a server that lives as long as this process (stopped at exit) and point ``DATABASE_URL`` at it,
    so that the processes this one starts use it too."""
    server = server_from_environment()
    server.start()
    atexit.register(server.stop)
    os.environ["DATABASE_URL"] = server.url
    return server


def database_url(database: dict[str, Any]) -> str:
    """The ``DATABASE_URL`` of a Django database settings dict (e.g. the test database, once created), so that
    processes the tests start open the very database the tests use."""
    engine, name = database["ENGINE"], str(database["NAME"])
    if engine == "django.db.backends.sqlite3":
        return f"sqlite:///{name}"
    if engine == "django.db.backends.postgresql":
        user, password = quote(database.get("USER") or "", safe=""), quote(database.get("PASSWORD") or "", safe="")
        host, port = database.get("HOST") or "127.0.0.1", database.get("PORT") or 5432
        return f"postgres://{user}:{password}@{host}:{port}/{quote(name, safe='')}"
    raise ValueError(f"no DATABASE_URL for the {engine} engine")


def main(argv: list[str]) -> int:
    """Run a command with ``DATABASE_URL`` set to a fresh private server, which is stopped when it ends."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m hosts.harness.postgres -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    server = server_from_environment()
    server.start()
    try:
        return subprocess.run(argv, env={**os.environ, "DATABASE_URL": server.url}, check=False).returncode
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
