"""Helpers shared by the bench scripts: paths, machine facts, percentiles, RSS and markdown tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the scripts run as ``python bench/x.py`` from the checkout
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "news-2023q4.jsonl"
SEED = SHARED / "corpus" / "seed"
SAMPLES = ROOT / "samples"
QUESTIONS = SHARED / "eval" / "realtimeqa-dev.jsonl"
NEWS_INDEX = ROOT / "data" / "news-index"
RESULTS = ROOT / "bench" / "RESULTS.md"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def rss_mb(pid: int | str = "self") -> float:
    """Current resident set size of a process in MB (from /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (getrusage; kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip() + (" (+ uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_line() -> str:
    load = os.getloadavg()
    return (
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; nproc {os.cpu_count()}, {cpu_model()}; "
        f"git {git_head()}; load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at start"
    )


def load_questions(path: Path = QUESTIONS, limit: int | None = None) -> list[tuple[str, str]]:
    """(question, date) pairs of the dev set."""
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    pairs = [(str(r["question"]), str(r["date"])) for r in rows]
    return pairs[:limit] if limit else pairs


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A markdown table; floats are shown with sensible precision."""

    def fmt(value: object) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "-"
            if abs(value) >= 100:
                return f"{value:,.0f}"
            if abs(value) >= 10:
                return f"{value:.1f}"
            return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(markdown: str, data: dict[str, object], md_path: Path | None, json_path: Path | None) -> None:
    print("\n" + markdown, flush=True)
    if md_path is not None:
        md_path.write_text(markdown + "\n", encoding="utf-8")
    if json_path is not None:
        json_path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


@contextmanager
def serve(index: Path, startup_timeout: float = 180.0) -> Iterator[tuple[str, subprocess.Popen[str], dict, float]]:
    """Run ``byline serve`` on a free loopback port over ``index``; yield (base URL, process, /readyz, startup s)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, BYLINE_RATE_LIMIT_PER_MINUTE="100000000", BYLINE_API_KEYS="")
    byline = Path(sys.executable).with_name("byline")
    command = [str(byline), "serve", "--index", str(index), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning"]
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, text=True)
        try:
            started = time.perf_counter()
            ready: dict[str, object] = {}
            with httpx.Client(base_url=base_url, timeout=5) as client:
                while time.perf_counter() - started < startup_timeout and server.poll() is None:
                    try:
                        response = client.get("/readyz")
                        if response.status_code == 200:
                            ready = response.json()
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.5)
            if not ready:
                log.seek(0)
                raise RuntimeError(f"the server did not become ready:\n{log.read()[-3000:]}")
            yield base_url, server, ready, time.perf_counter() - started
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
