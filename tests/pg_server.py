"""A real, throwaway PostgreSQL server for the tests: Debian's ``initdb`` and ``pg_ctl`` in a temporary directory,
listening on 127.0.0.1 and a free port only (no Unix socket), trust authentication for the one user ``byline``.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user that Debian's package creates
(or as ``nobody``), through ``runuser``. ``find_postgres_bin`` says why PostgreSQL cannot be used when it cannot.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "byline"


def find_postgres_bin() -> tuple[Path | None, str]:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first), or None and the reason."""

    def version(directory: str) -> tuple[int, ...]:
        return tuple(int(part) for part in Path(directory).parent.name.split(".") if part.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    for directory in candidates:
        if (Path(directory) / "initdb").is_file() and (Path(directory) / "pg_ctl").is_file():
            return Path(directory), ""
    return None, "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package"


def _run_as() -> list[str]:
    """The command prefix that drops root (PostgreSQL will not run as root); empty when not root."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and there is no postgres or nobody user to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="byline-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.prefix = _run_as()
        if self.prefix:
            shutil.chown(self.root, user=self.prefix[2])

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.prefix, *args], cwd=self.root, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}\n{log}")

    def start(self) -> PostgresServer:
        initdb, pg_ctl = str(self.bin_dir / "initdb"), str(self.bin_dir / "pg_ctl")
        self._run(initdb, "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database (so every test starts from no tables); its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
