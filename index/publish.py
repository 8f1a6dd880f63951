"""Index versions on disk and the atomic switch between them.

Layout of an index root::

    <root>/CURRENT                  name of the published version (replaced atomically)
    <root>/versions/<version>/      one complete, immutable version (manifest.json written last)
    <root>/versions/.staging-*/     a version being written; never read; removed when stale
    <root>/conversations.sqlite     conversations (the service's; outside versions)

A writer builds a whole version in a staging directory, fsyncs it, renames it into ``versions/`` and
only then replaces ``CURRENT``. A crash at any moment leaves ``CURRENT`` naming a complete version.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from index.manifest import IndexError_

CURRENT = "CURRENT"
VERSIONS = "versions"
STAGING_PREFIX = ".staging-"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(dirpath))


def current_version(root: Path) -> str | None:
    try:
        name = (root / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def version_dir(root: Path, version: str) -> Path:
    if not version or "/" in version or version.startswith("."):
        raise IndexError_(f"invalid version name in {root / CURRENT}: {version!r}")
    return root / VERSIONS / version


def current_dir(root: Path) -> Path:
    version = current_version(root)
    if version is None:
        raise IndexError_(f"no index at {root}: run `byline ingest PATH --index {root}` first")
    return version_dir(root, version)


def new_version_name() -> str:
    return datetime.now(UTC).strftime("v%Y%m%dT%H%M%S%fZ")


def make_staging(root: Path) -> Path:
    versions = root / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    staging = versions / f"{STAGING_PREFIX}{os.getpid()}-{time.time_ns()}"
    staging.mkdir()
    return staging


def publish(root: Path, staging: Path, version: str, keep: int = 3) -> Path:
    """Move a fully written staging directory into place and point ``CURRENT`` at it."""
    fsync_tree(staging)
    final = version_dir(root, version)
    os.rename(staging, final)
    fsync_dir(final.parent)
    tmp = root / f".{CURRENT}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        handle.write(version + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / CURRENT)
    fsync_dir(root)
    collect_garbage(root, keep)
    return final


def collect_garbage(root: Path, keep: int, stale_after_s: float = 3600.0) -> None:
    """Remove old versions beyond ``keep`` (never the current one) and abandoned staging directories."""
    versions = root / VERSIONS
    if not versions.is_dir():
        return
    current = current_version(root)
    complete = sorted(p for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in [p for p in complete if p.name != current][: max(0, len(complete) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    now = time.time()
    for staging in versions.glob(f"{STAGING_PREFIX}*"):
        pid = staging.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        alive = pid.isdigit() and _pid_alive(int(pid))
        if not alive or now - staging.stat().st_mtime > stale_after_s:
            shutil.rmtree(staging, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
