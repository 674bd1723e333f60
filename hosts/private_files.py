"""Files only isoweb's own user may read, private from their creation (never written, then chmod-ed).

The secret key, the SQLite database (tokens, sessions, password hashes, guest XML) and the demo credentials live
under ``var/``. The directory is made 0700 and each file is created with mode 0600 by ``os.open`` (the umask can
only take bits away), written under a temporary name and renamed into place, so no other local user can read it
even for an instant. Files and directories left looser by an older version are tightened when found (only those
owned by the current user).

Used by ``isoweb/settings.py`` before Django is set up: this module imports nothing from Django.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def tighten(path: Path, mode: int) -> None:
    """Take away any permission beyond ``mode`` from an existing path that the current user owns."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    current = info.st_mode & 0o777
    if current & ~mode and info.st_uid == os.geteuid():
        os.chmod(path, current & mode)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with the directory itself 0700; tighten it if it already exists."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tighten(path, DIR_MODE)
    return path


def write_private(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write ``text`` to ``path`` as a file that is 0600 from its creation, atomically.

    With ``replace=False`` an existing file is kept (another process got there first) and ``False`` returned.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)  # fails if the file exists: never overwrites, never shows a half-written file
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def private_sqlite(path: Path) -> None:
    """Create an SQLite database file as an empty 0600 file (SQLite gives its -wal and -shm files the same mode);
    tighten an existing one and its -wal/-shm. A path that cannot be created here is left to SQLite to report."""
    with contextlib.suppress(FileExistsError, FileNotFoundError, PermissionError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"):
        with contextlib.suppress(PermissionError):
            tighten(path.with_name(name), FILE_MODE)
