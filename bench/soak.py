"""Soak test of the real service (tracker issue 7): ``byline serve`` (uvicorn, loopback) in a subprocess under a
steady mixed load for minutes, watching for errors, latency drift and memory growth.

    .venv/bin/python bench/soak.py [--minutes 10] [--concurrency 16] [--index data/news-index]

Each of ``--concurrency`` threads (one httpx client each) takes turns over the RealTimeQA dev questions (a few
built-in questions when the file is absent) and cycles through ``POST /v1/ask``, a two-turn ``POST /v1/chat``
conversation (the question, then a follow-up in the same conversation), ``GET /v1/search`` and ``POST /v1/ask``
again. The server runs with default settings except the per-client rate limit, raised so that the load generator is
not throttled. It serves a temporary index root whose ``versions`` link to the given index's versions, so the
conversations written by the chats go to a temporary database and the given index is not modified.

The server's RSS (VmRSS in /proc/<pid>/status) is sampled every ``--sample-seconds``. Growth is measured from the
first sample at or after ``--warmup-seconds`` (minute 1 by default: caches filled, every worker thread used) to a
sample taken when the load has stopped. Everything is bounded: the load stops issuing requests at its deadline (or
after ``--max-requests``) and waits for those in flight; the sampler stops with it.

Printed: requests, errors, req/s and p50/p95 per minute and overall, RSS at the end of the warm-up and at the end,
and the growth. Exit status 1 if there was any error (non-200 or transport error) or RSS grew by 5 % or more.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import NEWS_INDEX, QUESTIONS, load_questions, machine_line, percentile, proc_status_mb, serve, table

FALLBACK_QUESTIONS: list[tuple[str, str]] = [
    ("How did the Millbrook council vote on the bike lanes?", ""),
    ("Why does Pashinyan say Russia failed Armenia?", ""),
    ("What did the central bank decide about interest rates?", ""),
    ("Which team won the final?", ""),
    ("What is the capital of Peru?", ""),
]
FOLLOWUPS = ("What happened next?", "Who else was involved?", "When did this happen?", "Why does it matter?")
OPS = ("ask", "chat", "search", "ask")  # one turn of a worker; a chat is two requests
GROWTH_LIMIT_PCT = 5.0


@dataclass
class Soak:
    """What one soak run measured."""

    seconds: float
    concurrency: int
    warmup_s: float
    bucket_s: float
    ready: dict[str, object] = field(default_factory=dict)
    startup_s: float = float("nan")
    # (seconds since the load started, latency ms, endpoint, error or "")
    results: list[tuple[float, float, str, str]] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds since the load started, MB)
    wall_s: float = float("nan")
    rss_peak_mb: float = float("nan")

    @property
    def requests(self) -> int:
        return len(self.results)

    @property
    def errors(self) -> list[str]:
        return [f"{kind}: {error}" for _, _, kind, error in self.results if error]

    @property
    def rss_start(self) -> tuple[float, float]:
        """The first RSS sample at or after the warm-up (the last sample if the run was shorter)."""
        after = [sample for sample in self.rss if sample[0] >= self.warmup_s]
        return after[0] if after else (self.rss[-1] if self.rss else (float("nan"), float("nan")))

    @property
    def rss_end(self) -> tuple[float, float]:
        return self.rss[-1] if self.rss else (float("nan"), float("nan"))

    @property
    def growth_pct(self) -> float:
        start, end = self.rss_start[1], self.rss_end[1]
        return (end - start) / start * 100 if start > 0 else float("nan")

    @property
    def ok(self) -> bool:
        return self.requests > 0 and not self.errors and self.growth_pct < GROWTH_LIMIT_PCT

    def buckets(self) -> list[list[object]]:
        """One row per ``bucket_s`` of load: bucket, requests, errors, req/s, p50 ms, p95 ms, RSS MB at its end."""
        count = (
            max(1, math.floor(self.wall_s / self.bucket_s + 0.5)) if self.wall_s == self.wall_s else 1
        )  # tail joins the last
        rows = []
        for b in range(count):
            lo, hi = b * self.bucket_s, (b + 1) * self.bucket_s
            inside = [r for r in self.results if lo <= r[0] < hi or (b == count - 1 and r[0] >= hi)]
            good = [ms for _, ms, _, error in inside if not error]
            span = (self.wall_s if b == count - 1 else hi) - lo
            rss = [mb for t, mb in self.rss if t <= hi or b == count - 1]
            rows.append(
                [
                    b + 1,
                    len(inside),
                    sum(1 for r in inside if r[3]),
                    len(inside) / span if span > 0 else float("nan"),
                    percentile(good, 50),
                    percentile(good, 95),
                    rss[-1] if rss else float("nan"),
                ]
            )
        return rows

    def report(self) -> str:
        good = [ms for _, ms, _, error in self.results if not error]
        by_kind = {kind: sum(1 for r in self.results if r[2] == kind) for kind in ("ask", "chat", "search")}
        unit = "minute" if self.bucket_s == 60 else f"{self.bucket_s:g} s"
        start_t, start_mb = self.rss_start
        end_t, end_mb = self.rss_end
        lines = [
            f"server ready in {self.startup_s:.1f} s: {self.ready}",
            f"load: {self.seconds:.0f} s at concurrency {self.concurrency}, mixed ask/chat (two turns)/search",
            "",
            table([unit, "requests", "errors", "req/s", "p50 ms", "p95 ms", "RSS MB"], self.buckets()),
            "",
            f"total: {self.requests} requests ({', '.join(f'{k} {v}' for k, v in by_kind.items())}) in "
            f"{self.wall_s:.1f} s = {self.requests / self.wall_s:.1f} req/s; p50 {percentile(good, 50):.0f} ms, "
            f"p95 {percentile(good, 95):.0f} ms, p99 {percentile(good, 99):.0f} ms",
            f"errors: {len(self.errors)}" + (f" {sorted(set(self.errors))[:10]}" if self.errors else ""),
            f"server RSS: {start_mb:.1f} MB at {start_t:.0f} s (end of the {self.warmup_s:g} s warm-up), "
            f"{end_mb:.1f} MB at the end ({end_t:.0f} s), growth {self.growth_pct:+.2f} % "
            f"(limit < {GROWTH_LIMIT_PCT:g} %); peak {self.rss_peak_mb:.1f} MB; {len(self.rss)} samples",
            f"verdict: {'OK' if self.ok else 'NOT OK'}; load average at end {os.getloadavg()[0]:.1f}",
        ]
        return "\n".join(lines)


@contextmanager
def overlay_root(index: Path) -> Iterator[Path]:
    """A temporary index root serving ``index``'s published version: ``CURRENT`` copied, ``versions`` a symlink.

    The server only reads versions; the one thing it writes in a root is ``conversations.sqlite``, which lands here.
    """
    index = index.resolve()
    with tempfile.TemporaryDirectory(prefix="byline-soak-") as tmp:
        root = Path(tmp)
        shutil.copyfile(index / "CURRENT", root / "CURRENT")
        (root / "versions").symlink_to(index / "versions", target_is_directory=True)
        yield root


def _turn(client: httpx.Client, op: str, question: str, as_of: str, followup: str) -> list[tuple[float, str, str]]:
    """One operation; returns (latency ms, endpoint, error or "") per request made."""
    out: list[tuple[float, str, str]] = []

    def call(kind: str, method: str, path: str, **kwargs: object) -> httpx.Response | None:
        t0 = time.perf_counter()
        try:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            error = "" if response.status_code == 200 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            response, error = None, type(exc).__name__
        out.append(((time.perf_counter() - t0) * 1000, kind, error))
        return response if not error else None

    body: dict[str, object] = {"question": question}
    if as_of:
        body["as_of"] = as_of
    if op == "ask":
        call("ask", "POST", "/v1/ask", json=body)
    elif op == "search":
        call("search", "GET", "/v1/search", params={"q": question, "k": 5})
    else:
        first = call("chat", "POST", "/v1/chat", json=body)
        try:
            conversation = first.json().get("conversation_id") if first is not None else None
        except ValueError:  # not JSON: counted as an error just below
            conversation = None
        if first is not None and not conversation:
            out[-1] = (out[-1][0], "chat", "no conversation_id")
        elif conversation:
            call("chat", "POST", "/v1/chat", json={**body, "question": followup, "conversation_id": conversation})
    return out


def run_soak(
    index: Path,
    seconds: float,
    concurrency: int = 16,
    warmup_s: float = 60.0,
    sample_s: float = 5.0,
    bucket_s: float = 60.0,
    timeout: float = 60.0,
    max_requests: int | None = None,
    questions: list[tuple[str, str]] | None = None,
    progress: bool = True,
) -> Soak:
    """Serve ``index`` (through a temporary root) and load it for ``seconds``; return what was measured."""
    if questions is None:
        questions = load_questions() if QUESTIONS.exists() else FALLBACK_QUESTIONS
    cap = max_requests if max_requests is not None else int(seconds * 1000) + 1000  # far above any real rate
    soak = Soak(seconds=seconds, concurrency=concurrency, warmup_s=warmup_s, bucket_s=bucket_s)
    with overlay_root(index) as root, serve(root) as (base_url, server, ready, startup_s):
        soak.ready, soak.startup_s = ready, startup_s
        lock = threading.Lock()
        counter = itertools.count()
        stop = threading.Event()
        started = time.perf_counter()
        deadline = started + seconds

        def worker() -> None:
            with httpx.Client(base_url=base_url, timeout=timeout) as client:
                while time.perf_counter() < deadline and not stop.is_set():
                    with lock:
                        turn = next(counter)
                        if len(soak.results) >= cap:
                            return
                    question, as_of = questions[turn % len(questions)]
                    op = OPS[turn % len(OPS)]
                    try:
                        done = _turn(client, op, question, as_of, FOLLOWUPS[turn % len(FOLLOWUPS)])
                    except Exception as exc:  # a bug here must count as an error, not end the thread unseen
                        done = [(float("nan"), op, f"load generator: {type(exc).__name__}")]
                    now = time.perf_counter() - started
                    with lock:
                        soak.results.extend((now, ms, kind, error) for ms, kind, error in done)

        def sampler() -> None:
            for n in itertools.count():  # bounded: one sample per sample_s until the load stops
                if n > seconds / sample_s + 10:
                    return
                mb = proc_status_mb(server.pid, "VmRSS")
                at = time.perf_counter() - started
                with lock:
                    soak.rss.append((at, mb))
                    done, failed = len(soak.results), sum(1 for r in soak.results if r[3])
                if progress and n and n % max(1, round(bucket_s / sample_s)) == 0:
                    print(f"  {at:5.0f} s: {done} requests, {failed} errors, RSS {mb:.1f} MB", flush=True)
                if stop.wait(sample_s):
                    return

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        watch = threading.Thread(target=sampler, daemon=True)
        watch.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.perf_counter()) + 2 * timeout + 5)
        stop.set()
        soak.wall_s = time.perf_counter() - started
        watch.join(timeout=10)
        soak.rss.append((soak.wall_s, proc_status_mb(server.pid, "VmRSS")))
        soak.rss_peak_mb = proc_status_mb(server.pid, "VmHWM")
    return soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--index", type=Path, default=NEWS_INDEX)
    parser.add_argument("--warmup-seconds", type=float, default=60.0, help="RSS growth is measured from here")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="RSS sampling interval")
    parser.add_argument("--bucket-seconds", type=float, default=60.0, help="report latency per this many seconds")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.concurrency < 1:
        parser.error("--minutes must be > 0 and --concurrency >= 1")

    print(machine_line(), flush=True)
    source = QUESTIONS if QUESTIONS.exists() else "built-in questions"
    print(f"soak: index {args.index}, {args.minutes:g} min at concurrency {args.concurrency}, questions {source}")
    soak = run_soak(
        args.index,
        args.minutes * 60,
        args.concurrency,
        warmup_s=args.warmup_seconds,
        sample_s=args.sample_seconds,
        bucket_s=args.bucket_seconds,
        timeout=args.timeout,
        max_requests=args.max_requests,
    )
    print("\n" + soak.report(), flush=True)
    return 0 if soak.ok else 1


if __name__ == "__main__":
    sys.exit(main())
