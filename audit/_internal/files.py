"""Private files: keys, secrets, databases and exports readable by their owner only, whatever the umask.

``os.open(path, ..., 0o600)`` is masked by the umask, which can only remove bits, so 0600 stays 0600;
but files that other code creates (SQLite's database, an ``open()`` of an export) get 0666 minus the
umask, which under umask 0 is world-writable. Everything here sets the mode explicitly instead.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def private_directory(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; tighten ``path`` itself if others can enter.

    An existing directory is tightened too: a data directory made by an older version (0755) holds
    the same secrets. Parents that already exist are left alone (they are not ours).
    """
    target = Path(path)
    missing = [p for p in (target, *target.parents) if not p.exists()]
    for p in reversed(missing):
        try:
            p.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass  # another process made it meanwhile; tightened below if it is ours to tighten
        else:
            os.chmod(p, DIR_MODE)  # mkdir's mode is masked by the umask; 0700 must not lose its w or x
    restrict(target, DIR_MODE)
    return target


def restrict(path: str | os.PathLike[str], mode: int = FILE_MODE) -> None:
    """Remove group and other access from an existing file or directory we own; warn if we cannot."""
    p = Path(path)
    current = stat.S_IMODE(p.stat().st_mode)
    if current & _OTHERS or current & mode != mode:
        try:
            os.chmod(p, mode)
        except PermissionError:
            log.warning("%s is accessible to others (mode %o) and is not ours to change", p, current)
            return
        log.info("restricted %s from mode %o to %o", p, current, mode)


def write_private_file(path: str | os.PathLike[str], data: bytes, *, replace: bool = False) -> bool:
    """Write ``data`` to ``path`` with mode 0600, atomically: the file appears complete or not at all.

    With ``replace=False`` the file is created only if absent (a hard link is exclusive): when two
    processes start at once, the loser keeps the winner's file and gets False. With ``replace=True``
    an existing file is replaced in one rename. Returns True when this call's data is in place. The
    directory is created private if missing.
    """
    target = Path(path)
    if not target.parent.exists():
        private_directory(target.parent)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, target)
            written = True
        else:
            try:
                os.link(tmp, target)
                written = True
            except FileExistsError:
                written = False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(target.parent)
    return written


def open_private_file(path: str | os.PathLike[str]) -> IO[str]:
    """Open ``path`` for writing text, truncated, with mode 0600 (also when it existed with another)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def create_private_file(path: str | os.PathLike[str]) -> None:
    """Make sure ``path`` exists with mode 0600 (e.g. a SQLite database before SQLite creates it).

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's mode, so a private
    database file keeps those private too.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        restrict(target)
        return
    os.fchmod(fd, FILE_MODE)
    os.close(fd)


def _fsync_directory(directory: Path) -> None:
    # The new name must survive a crash too, not only the bytes.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
