"""The secret key, the SQLite database and the demo credentials are private from their creation: files 0600 in
a 0700 var/ directory, whatever the umask, without relying on a chmod after writing."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from pytest_django.fixtures import Settings

from hosts import private_files
from isoweb import settings as isoweb_settings

BASE_DIR = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def no_chmod(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record (and skip) every chmod: files must come out private without one."""
    calls: list[str] = []
    monkeypatch.setattr(os, "chmod", lambda path, *a, **k: calls.append(str(path)))
    monkeypatch.setattr(Path, "chmod", lambda self, *a, **k: calls.append(str(self)))
    old = os.umask(0o022)  # the usual umask: 0644 files, 0755 directories unless asked otherwise
    yield calls
    os.umask(old)


def test_a_fresh_var_dir_gets_a_0700_directory_and_a_0600_secret_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_chmod: list[str]
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    var = tmp_path / "var"
    key = isoweb_settings._secret_key(var)
    assert len(key) > 40
    assert mode(var) == 0o700
    assert mode(var / "secret_key") == 0o600
    assert no_chmod == []
    assert isoweb_settings._secret_key(var) == key  # kept, not regenerated
    assert sorted(p.name for p in var.iterdir()) == ["secret_key"]  # no temporary file left


def test_a_secret_key_written_by_another_process_first_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    path = tmp_path / "secret_key"
    assert private_files.write_private(path, "first", replace=False)
    assert not private_files.write_private(path, "second", replace=False)
    assert path.read_text() == "first" and mode(path) == 0o600
    assert isoweb_settings._secret_key(tmp_path) == "first"


def test_files_an_older_version_left_readable_are_tightened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    os.chmod(var, 0o755)  # noqa: S103 - what an older version left
    (var / "secret_key").write_text("old-key")
    os.chmod(var / "secret_key", 0o644)
    database = var / "isoweb.sqlite3"
    sqlite3.connect(database).close()
    os.chmod(database, 0o644)
    private_files.private_dir(var)
    private_files.private_sqlite(database)
    assert isoweb_settings._secret_key(var) == "old-key"
    assert (mode(var), mode(var / "secret_key"), mode(database)) == (0o700, 0o600, 0o600)


def test_the_settings_make_var_the_secret_key_and_the_database_private(tmp_path: Path) -> None:
    """A fresh install, as the settings set it up in a new process with umask 022: var/ 0700, every file 0600
    (the database and its WAL files included, once Django has written to it)."""
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(ISOWEB_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="isoweb.settings")
    script = (
        "import os; os.umask(0o022)\n"
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    c.execute('CREATE TABLE t (x text)')\n"
        "    c.execute(\"INSERT INTO t VALUES ('x')\")\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, check=True, timeout=60)
    assert mode(var) == 0o700
    files = {p.name: mode(p) for p in var.iterdir() if p.is_file()}
    assert {"secret_key", "isoweb.sqlite3"} <= set(files), files
    assert all(m == 0o600 for m in files.values()), {k: oct(m) for k, m in files.items()}


@pytest.mark.django_db
def test_demo_users_writes_its_credentials_0600(tmp_path: Path, settings: Settings, no_chmod: list[str]) -> None:
    settings.VAR_DIR = tmp_path / "var"
    call_command("demo_users", stdout=open(os.devnull, "w"))  # noqa: SIM115
    path = tmp_path / "var" / "demo-credentials.txt"
    assert mode(path) == 0o600 and mode(tmp_path / "var") == 0o700
    assert no_chmod == []
    first = path.read_text()
    assert [line.split()[0] for line in first.splitlines()] == ["viewer", "operator", "approver", "admin"]
    call_command("demo_users", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert path.read_text() == first and mode(path) == 0o600  # passwords kept, still private
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo-credentials.txt"]
