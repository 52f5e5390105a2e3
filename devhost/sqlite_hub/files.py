"""File safety for the hub's database: folder and file modes, and the one-hub-per-file lock.

Why this module exists: the task hub file holds every prompt and reply, so it and its
``-wal``/``-shm`` companions are created readable by their owner only, in folders only
the owner may enter; and since leases live in the serving process's memory, exactly one
hub may serve a database file, however the file is named (symlink, hard link, relative
path).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from typing import IO, NoReturn

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class HubInUseError(RuntimeError):
    """Another task hub process already serves this database file."""


# The hub file holds prompts and replies: only its owner may read it.
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dirs(directory: pathlib.Path) -> None:
    """Creates missing folders (0700); folders that already exist are left as they are."""
    missing: list[pathlib.Path] = []
    for candidate in [directory, *directory.parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, DIR_MODE)
            os.chmod(folder, DIR_MODE)  # the umask may have narrowed the mode, never widened it


def tighten(path: pathlib.Path) -> None:
    """Makes an existing hub file (database, -wal, -shm) readable by its owner only."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    euid = getattr(os, "geteuid", None)  # absent on Windows, where modes barely apply
    if info.st_mode & 0o777 != FILE_MODE and (euid is None or info.st_uid == euid()):
        os.chmod(path, FILE_MODE)


class OwnerLock:
    """The exclusive owner lock of one database file, whatever path names it.

    Leases live in the serving process's memory, so two hubs on one file would hand the
    same work out twice. Two OS file locks (``flock``; a killed process drops them at
    once) guard it:

    * one on the database file itself, so every name of the file (a symlink, a hard
      link, another relative path) meets the same lock: ``flock`` belongs to the inode;
    * one on ``<real path>.owner`` beside the resolved database path, which also holds
      the owner's pid for the error message (and is what earlier hubs lock).

    After SQLite opens the file, ``verify`` checks that the locked inode (device+inode)
    is the one SQLite opened, so a file swapped in between cannot slip past the lock.
    ``flock`` and SQLite's POSIX record locks do not interact on Linux; the lock's
    descriptor is closed only after SQLite's connection, since closing any descriptor
    of a file drops the process's POSIX locks on it.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self.real = pathlib.Path(os.path.realpath(path))
        self._db_fd: int | None = None
        self._owner: IO[str] | None = None
        self.identity: tuple[int, int] = (0, 0)

    def _refuse(self, path: pathlib.Path) -> NoReturn:
        owner = "unknown"
        with contextlib.suppress(OSError):
            recorded = self.real.with_name(self.real.name + ".owner").read_text(encoding="utf-8")
            owner = recorded.strip() or owner
        self.release()
        raise HubInUseError(
            f"{path} is already served by another task hub (pid {owner}); stop it or use another database"
        )

    def acquire(self, path: pathlib.Path) -> None:
        fd = os.open(self.real, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        self._db_fd = fd
        info = os.fstat(fd)
        self.identity = (info.st_dev, info.st_ino)
        if fcntl is None:  # platforms without flock get no guard
            return  # type: ignore[unreachable]
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._refuse(path)
        owner_path = self.real.with_name(self.real.name + ".owner")
        descriptor = os.open(owner_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        handle = os.fdopen(descriptor, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            self._refuse(path)
        self._owner = handle
        tighten(owner_path)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()

    def verify(self) -> None:
        """Refuses to go on if the path no longer names the locked inode."""
        info = os.stat(self.real)
        if (info.st_dev, info.st_ino) != self.identity:
            raise HubInUseError(f"{self.real} was replaced while it was being opened")

    def release(self) -> None:
        if self._owner is not None:
            self._owner.close()  # closing the file drops the lock
            self._owner = None
        if self._db_fd is not None:
            os.close(self._db_fd)
            self._db_fd = None
