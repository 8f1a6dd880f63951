"""One writer per index: an exclusive ``fcntl.flock`` on ``<root>/ingest.lock`` for as long as a job runs.

The operating system drops the lock when the holder exits in any way (kill -9 included), so a lock is
never stale; the file itself stays behind and means nothing unless it is locked. The holder writes its
pid and start time into the file, so a second job can say which job it is waiting for.

A job that created the index directory and leaves nothing in it but the lock file (it failed before
writing anything) removes both, so a failed first ingest leaves no trace.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from index.manifest import IndexError_

LOCK_FILE = "ingest.lock"


class IndexLockedError(IndexError_):
    """Another job holds the index's lock (and the caller chose not to wait)."""


def describe_holder(path: Path) -> str:
    """``pid 1234, started 2026-12-01 20:31:02 UTC`` from the lock file, or ``pid unknown``."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    pid = holder.get("pid") if isinstance(holder, dict) else None
    started = holder.get("started") if isinstance(holder, dict) else None
    text = f"pid {pid}" if isinstance(pid, int) else "pid unknown"
    return f"{text}, started {started}" if isinstance(started, str) else text


@contextmanager
def index_lock(root: Path, wait: bool = False, notify: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the index's exclusive lock for the ``with`` block; yields the lock file's path.

    If another process holds it: with ``wait`` call ``notify`` with a message once and block until it is
    free, else raise :class:`IndexLockedError` naming the other job at once.
    """
    root = Path(root)
    path = root / LOCK_FILE
    created = _missing_dirs(root)
    fd = _acquire(root, path, wait, notify)
    try:
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        try:
            if created and _only_lock_file(root):
                os.unlink(path)  # still locked: a waiter notices the file is gone and locks a new one
                for directory in created:  # deepest first; stops at the first that is not empty
                    os.rmdir(directory)
            else:
                os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # releases the lock


def _acquire(root: Path, path: Path, wait: bool, notify: Callable[[str], None] | None) -> int:
    announced = False
    while True:
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise IndexError_(f"cannot lock the index at {root}: {exc.strerror or exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = describe_holder(path)
                if not wait:
                    raise IndexLockedError(
                        f"the index at {root} is being written by another ingest job ({holder}); "
                        "wait for it to finish, or re-run with --wait"
                    ) from None
                if notify is not None and not announced:
                    notify(f"the index at {root} is being written by another ingest job ({holder}); waiting for it")
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder removed the file as it left: lock the one at the path now


def _same_file(fd: int, path: Path) -> bool:
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino)


def _missing_dirs(root: Path) -> list[Path]:
    """``root`` and those of its parents that do not exist yet, deepest first."""
    missing: list[Path] = []
    directory = root.absolute()
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _only_lock_file(root: Path) -> bool:
    with suppress(OSError):
        return [entry.name for entry in os.scandir(root)] == [LOCK_FILE]
    return False
