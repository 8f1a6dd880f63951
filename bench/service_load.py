"""HTTP load on the real service: ``byline serve`` (uvicorn, loopback) in a subprocess, then a bounded load
generator (httpx, one client per thread) at each concurrency for a fixed time.

    .venv/bin/python bench/service_load.py [--index data/news-index] [--concurrency 1,4,16] [--seconds 10]

Requests are ``POST /v1/ask`` with the RealTimeQA dev questions in turn (``date`` as ``as_of``). The server runs
with default settings except the per-client rate limit, raised so that the load generator is not throttled.
Before the timed phases every question is asked once (bounded by ``--warmup-seconds``), as a running service
would have warmed its caches. Each phase stops issuing requests at its deadline and waits for those in flight.
Reported: requests/s, latency p50/p95/p99, errors (any non-200 or transport error; must be 0), and the server's
RSS (now and peak) with RSS per 1,000 chunks.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
import time
from pathlib import Path

import httpx
from _common import NEWS_INDEX, load_questions, machine_line, percentile, proc_status_mb, serve, table, write_outputs


def run_phase(
    base_url: str,
    questions: list[tuple[str, str]],
    concurrency: int,
    seconds: float,
    timeout: float,
    limit: int | None = None,
) -> dict[str, object]:
    """Ask in turn from ``concurrency`` threads until ``seconds`` have passed (or ``limit`` requests were sent)."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            while time.perf_counter() < deadline:
                with lock:
                    turn = next(counter)
                if limit is not None and turn >= limit:
                    return
                question, as_of = questions[turn % len(questions)]
                t0 = time.perf_counter()
                try:
                    response = client.post("/v1/ask", json={"question": question, "as_of": as_of})
                    ok = response.status_code == 200
                    detail = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    ok, detail = False, type(exc).__name__
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(detail)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + timeout + 5)
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "wall_s": wall,
        "rps": len(latencies) / wall if wall else float("nan"),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=NEWS_INDEX)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed load per concurrency level")
    parser.add_argument("--warmup-seconds", type=float, default=40.0, help="at most this long asking each question")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    print(machine_line(), flush=True)
    questions = load_questions()
    phases = []
    with serve(args.index, args.startup_timeout) as (base_url, server, ready, startup_s):
        rss_ready = proc_status_mb(server.pid, "VmRSS")
        print(f"server ready in {startup_s:.1f} s: {ready}, RSS {rss_ready:.0f} MB", flush=True)

        t0 = time.perf_counter()
        warm = run_phase(base_url, questions, 2, args.warmup_seconds, args.timeout, limit=len(questions))
        print(
            f"warm-up: {warm['requests']} requests in {time.perf_counter() - t0:.1f} s, {warm['errors']} errors",
            flush=True,
        )
        for level in [int(c) for c in args.concurrency.split(",") if c.strip()]:
            phase = run_phase(base_url, questions, level, args.seconds, args.timeout)
            phase["server_rss_mb"] = proc_status_mb(server.pid, "VmRSS")
            phases.append(phase)
            print(
                f"concurrency {level}: {phase['rps']:.1f} req/s, p50 {phase['p50_ms']:.0f} ms, "
                f"p95 {phase['p95_ms']:.0f} ms, {phase['errors']} errors {phase['error_kinds']}",
                flush=True,
            )
        rss_end = proc_status_mb(server.pid, "VmRSS")
        rss_peak = proc_status_mb(server.pid, "VmHWM")

    chunks = int(ready.get("chunks", 0))  # type: ignore[call-overload]
    per_k = rss_end / chunks * 1000 if chunks else float("nan")
    errors = sum(int(p["errors"]) for p in phases)  # type: ignore[call-overload]
    notes = [
        f"server: `byline serve` on loopback, index {args.index} ({chunks:,} chunks, {ready.get('articles')} "
        f"articles), default settings except BYLINE_RATE_LIMIT_PER_MINUTE raised; ready in {startup_s:.1f} s",
        f"load: POST /v1/ask over the {len(questions)} dev questions in turn, {args.seconds:.0f} s per level, "
        f"after a warm-up of {warm['requests']} requests; client and server share the machine's "
        f"{os.cpu_count()} cores",
        f"server RSS: {rss_ready:.0f} MB when ready, {rss_end:.0f} MB after the load (peak {rss_peak:.0f} MB) = "
        f"{per_k:.1f} MB per 1,000 chunks (all of it: model, runtime and index)",
    ]
    rows = [
        [p["concurrency"], p["requests"], p["rps"], p["p50_ms"], p["p95_ms"], p["p99_ms"], p["errors"]] for p in phases
    ]
    verdict = f"Errors: **{errors}** ({'ok' if errors == 0 else 'NOT OK: must be 0'})."
    markdown = "\n".join(
        [
            "### HTTP service under load (POST /v1/ask)",
            "",
            *[f"- {note}" for note in notes],
            "",
            table(["concurrency", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows),
            "",
            verdict + f" Load average at end {os.getloadavg()[0]:.1f}.",
        ]
    )
    data = {"notes": notes, "phases": phases, "rss_ready_mb": rss_ready, "rss_end_mb": rss_end, "rss_peak_mb": rss_peak}
    write_outputs(markdown, data, args.md, args.json)
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
