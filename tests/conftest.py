"""Shared fixtures: the real parts (libvirt fleet, Redis, Celery worker) and the personas.

The fleet, Redis and the worker are started once per session on the tests' own ports and names
(see hosts.harness.fleet.test_fleet and isoweb.settings_test), and stopped by pid at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet, test_fleet
from hosts.harness.guests import tuning_fingerprints
from hosts.harness.postgres import database_url
from hosts.harness.processes import port_open
from hosts.inventory import create_host, sync_host
from hosts.libvirt import connection
from hosts.libvirt.errors import VirtError
from hosts.models import Host
from hosts.roles import ADMIN, APPROVER, OPERATOR, VIEWER, ensure_role_groups

BASE_DIR = Path(settings.BASE_DIR)
ARTIFACTS = Path(os.environ.get("ISOWEB_ARTIFACTS", BASE_DIR / "artifacts"))


def pytest_report_header() -> str:
    """Say which database this run is on (``ISOWEB_TEST_DB=postgres`` runs it on a private PostgreSQL)."""
    database = settings.DATABASES["default"]
    where = f"{database.get('HOST')}:{database.get('PORT')}" if database.get("HOST") else database["NAME"]
    return f"database: {database['ENGINE'].rsplit('.', 1)[-1]} {where}"


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def virsh(uri: str, *args: str) -> str:
    """Run a virsh command against a fleet host and return its output (the independent witness)."""
    result = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def spawn(name: str, args: list[str], *, append: bool = False, **env: str) -> tuple[subprocess.Popen[bytes], Any]:
    """Start one of the stack's processes in a session of its own (so it is stopped by pid, with its children),
    on the test database and the tests' Redis, logging to ``artifacts/<name>.log``; returns it and its log."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "isoweb.settings_test",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),  # the test database, SQLite or PostgreSQL
        "REDIS_URL": settings.REDIS_URL,
        **env,
    }
    log = open(ARTIFACTS / f"{name}.log", "ab" if append else "wb")  # noqa: SIM115 - open for the process's life
    proc = subprocess.Popen(
        args, cwd=BASE_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return proc, log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


class RedisServer:
    """The tests' Redis (broker and channel layer), which a test may stop and start again on the same port."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: port_open(self.port), 10, what="redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


_REDIS: list[RedisServer] = []  # the one this session started, if it started one


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis on the tests' port (the broker and channel layer)."""
    port = int(os.environ.get("ISOWEB_TEST_REDIS_PORT", "6391"))
    if not port_open(port):
        server = RedisServer(port, tmp_path_factory.mktemp("redis"))
        server.start()
        _REDIS.append(server)
    yield settings.REDIS_URL
    for server in _REDIS:
        server.stop()


@pytest.fixture
def redis_control(redis_server: str) -> RedisServer:
    """The tests' own Redis, to stop and start (a Redis the tests did not start is not theirs to stop)."""
    assert _REDIS, "Redis on the tests' port was not started by these tests; set ISOWEB_TEST_REDIS_PORT to a free port"
    return _REDIS[0]


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """The tests' own libvirt fleet: three real daemons with tiny real guests."""
    the_fleet = test_fleet(Path(settings.VAR_DIR))
    the_fleet.up()
    yield the_fleet
    the_fleet.down()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None, redis_server: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on the test database and the tests' Redis."""
    proc, log = spawn(
        "celery-worker",
        [
            *(sys.executable, "-m", "celery", "-A", "isoweb", "worker", "--loglevel", "INFO"),
            *("--concurrency", "3", "--hostname", f"test-{os.getpid()}@localhost"),
        ],
    )
    from isoweb.celery import app

    wait_for(lambda: proc.poll() is not None or app.control.ping(timeout=0.5), 60, 0.5, "celery worker")
    assert proc.poll() is None, "the Celery worker exited at start; see artifacts/celery-worker.log"
    yield proc
    _stop(proc)
    log.close()


@pytest.fixture
def start_beat(
    celery_worker: subprocess.Popen[bytes], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a real Celery beat (with settings overridden through the environment); stopped after the test."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(**overrides: str) -> subprocess.Popen[bytes]:
        schedule = str(tmp_path / f"beat-schedule-{len(started)}")
        args = [sys.executable, "-m", "celery", "-A", "isoweb", "beat", "--loglevel", "INFO", "--schedule", schedule]
        started.append(spawn("celery-beat", args, append=True, **overrides))
        return started[-1][0]

    yield start
    for proc, log in started:
        _stop(proc)
        log.close()


# --- personas --------------------------------------------------------------------------------------


def _make_user(username: str, *roles: str) -> User:
    groups = ensure_role_groups()
    user = User.objects.create_user(username, password=f"{username}-pass-123")
    for role in roles:
        user.groups.add(groups[role])
    return user


@pytest.fixture
def viewer(db: None) -> User:
    return _make_user("vera", VIEWER)


@pytest.fixture
def operator(db: None) -> User:
    return _make_user("otto", OPERATOR)


@pytest.fixture
def approver(db: None) -> User:
    return _make_user("anna", APPROVER)


@pytest.fixture
def admin_user(db: None) -> User:
    return _make_user("adam", ADMIN)


@pytest.fixture
def outsider(db: None) -> User:
    """A logged-in user who holds no role."""
    return _make_user("oscar")


@pytest.fixture
def login() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def fleet_hosts(fleet: Fleet, db: None) -> list[Host]:
    """The fleet's hosts registered in the inventory and synced once, directly through the service."""
    hosts = []
    for member in fleet.members:
        host = create_host(name=member.name, uri=member.uri, actor=None)
        result = sync_host(host.pk)
        assert result.ok, result.error
        hosts.append(Host.objects.get(pk=host.pk))
    return hosts


_PRISTINE: dict[str, dict[str, str]] = {}  # per host URI: each fleet guest's tuning as the fleet made it


@pytest.fixture(autouse=True)
def _pristine_fleet_guests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that uses the fleet gets its guests as the fleet made them, whatever earlier tests did.

    After such a test, each guest whose pins, caps or vCPUs (live or config) differ from the fingerprint
    taken when the fleet first came up is defined again from its spec and restarted (a test that changes a
    guest through libvirt and does not put it back would otherwise leave it so for every later test).
    A host whose daemon a test stopped is skipped (the next test's fleet start brings it back).
    """
    if "fleet" not in request.fixturenames:
        yield
        return
    the_fleet: Fleet = request.getfixturevalue("fleet")
    for member in the_fleet.members:
        if member.uri not in _PRISTINE:  # once per run: from the specs, whatever an aborted earlier run left
            member.reset_guests(member.guest_names)
            _PRISTINE[member.uri] = tuning_fingerprints(member.uri, member.guest_names)
    yield
    for member in the_fleet.members:
        try:
            now = tuning_fingerprints(member.uri, member.guest_names)
            changed = [name for name, print_ in _PRISTINE[member.uri].items() if now.get(name) != print_]
            if changed:
                member.reset_guests(changed)
        except VirtError:
            continue


@pytest.fixture(autouse=True)
def _fresh_libvirt_connections() -> Iterator[None]:
    """Tests that kill daemons must not leave a dead cached connection to the next test."""
    yield
    connection.disconnect_all()


# --- a real web server for the browser tests ------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def logged_in_page(base: str, user: User) -> Iterator[Any]:
    """Debian's Chromium, headless (Playwright), with one page logged in as ``user`` through the login form.

    Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls: read what the
    test needs from the database before entering.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"{base}/accounts/login/")
            page.fill("input[name=username]", user.username)
            page.fill("input[name=password]", f"{user.username}-pass-123")
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_url(lambda url: "/accounts/login/" not in url)
            yield page
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def web_server(fleet_hosts: list[Host], redis_server: str) -> Iterator[str]:
    """Daphne on a free loopback port, serving pages, the API and the websockets from the test database."""
    port = _free_port()
    proc, log = spawn(
        "daphne", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "isoweb.asgi:application"]
    )

    def answers() -> bool:
        assert proc.poll() is None, "daphne exited; see artifacts/charts/daphne.log"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return True
        except OSError:
            return False

    try:
        wait_for(answers, 30, what="daphne")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="session", autouse=True)
def _audit_triggers_lifted_while_flushing() -> Iterator[None]:
    """Let transactional tests' teardown flush the audit table too.

    The audit table refuses DELETE and TRUNCATE in the database (hosts/migrations/0005_audit_append_only.py), and
    a transactional test ends by emptying every table. Only that flush drops the triggers, in the same transaction
    as its deletes, and creates them again before committing; nothing else in the run may remove an audit row.
    """
    import importlib

    from django.db.backends.base.operations import BaseDatabaseOperations

    guard = importlib.import_module("hosts.migrations.0005_audit_append_only")
    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: list[str]) -> None:
        vendor = self.connection.vendor
        if vendor in guard.CREATE and any(guard.TABLE in sql for sql in sql_list):
            sql_list = [*guard.DROP[vendor], *sql_list, *guard.CREATE[vendor]]
        original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseDatabaseOperations.execute_sql_flush = original  # type: ignore[method-assign]
