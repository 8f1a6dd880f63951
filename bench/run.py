"""Run the benchmarks (issues 6 and 14) one after another and append one markdown section to bench/RESULTS.md.

    .venv/bin/python bench/run.py --quick     # < 5 min: 60-article ingest, 10 s per load level, 100k vectors, ...
    .venv/bin/python bench/run.py             # full, < 45 min: whole-corpus ingest, 30 s per level, 1M vectors, ...

Each benchmark runs in a process of its own (clean peak RSS, no shared caches) and writes its markdown table;
a failing benchmark is reported in the section and the others still run. ``--only`` picks some of them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, machine_line

BENCH = ROOT / "bench"

QUICK = {
    "query_latency": ["--rounds", "1"],
    "ingest": ["--subset", "60", "--rounds", "2"],
    "service_load": ["--concurrency", "1,4,16", "--seconds", "10", "--warmup-seconds", "30"],
    "scale": ["--sizes", "100000", "--queries", "200"],
    "encoder_backends": ["--passages", "96", "--queries", "10", "--rounds", "1"],
    "profile_paths": ["--articles", "30", "--questions", "20", "--http-seconds", "8"],
    "cold_paths": ["--questions", "20", "--http-questions", "20", "--process-rounds", "3"],
}
FULL = {
    "query_latency": ["--rounds", "3"],
    "ingest": ["--rounds", "1"],
    "service_load": ["--concurrency", "1,4,16", "--seconds", "30", "--warmup-seconds", "60"],
    "scale": ["--sizes", "100000,1000000", "--queries", "200"],
    "encoder_backends": ["--passages", "600", "--queries", "50", "--rounds", "3"],
    "profile_paths": ["--articles", "150", "--questions", "60"],
    "cold_paths": ["--questions", "60", "--http-questions", "60", "--process-rounds", "5"],
}
TIMEOUTS = {"quick": 240, "full": 45 * 60}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(QUICK))
    parser.add_argument("--results", type=Path, default=RESULTS, help="append the section here")
    parser.add_argument("--no-append", action="store_true", help="print the section only")
    args = parser.parse_args(argv)

    mode = "quick" if args.quick else "full"
    plan = QUICK if args.quick else FULL
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(plan)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    header = machine_line()
    started = time.perf_counter()
    parts: list[str] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="byline-bench-") as scratch:
        for name, extra in plan.items():
            if only and name not in only:
                continue
            md = Path(scratch) / f"{name}.md"
            command = [sys.executable, str(BENCH / f"{name}.py"), *extra, "--md", str(md)]
            print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
            t0 = time.perf_counter()
            try:
                code = subprocess.run(command, cwd=ROOT, timeout=TIMEOUTS[mode]).returncode
            except subprocess.TimeoutExpired:
                code = -1
            took = time.perf_counter() - t0
            if md.exists():
                parts.append(md.read_text(encoding="utf-8").rstrip() + f"\n\n({name}: {took:.0f} s)")
            if code != 0:
                failed.append(name)
                if not md.exists():
                    parts.append(f"### {name}\n\nFAILED (exit {code}) after {took:.0f} s; see the run's output.")
    total = time.perf_counter() - started
    section = "\n\n".join(
        [
            f"## Bench run ({mode}) -- {header}",
            f"`bench/run.py{' --quick' if args.quick else ''}`: {total / 60:.1f} min in all"
            + (f"; FAILED: {', '.join(failed)}" if failed else "")
            + ". Absolute times move with the machine's load; compare ratios within one run.",
            *parts,
        ]
    )
    print("\n" + section)
    if not args.no_append:
        fresh = not args.results.exists()
        with args.results.open("a", encoding="utf-8") as handle:  # append only: never rewrite earlier runs
            handle.write(("# Benchmark results\n" if fresh else "") + "\n" + section + "\n")
        print(f"\nappended to {args.results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
