"""Helpers shared by the bench scripts: paths, machine facts, percentiles, RSS and markdown tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

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
