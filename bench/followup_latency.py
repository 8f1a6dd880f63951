"""Time the follow-up path: ``FollowupResolver.resolve`` per follow-up over the dev conversation sets.

    .venv/bin/python -m bench.followup_latency [--cold-answers]

Each conversation is replayed in order, as the chat service would see it: the history grows by one turn at a
time, carrying the resolved question, the turn's evidence sentences as its quotes and its first expected answer
as its short answer. The reading stage has already run spaCy's NER over the sentences it quoted when it
answered, so by default those are warmed in its cache first (``--cold-answers``: not). The spaCy pipeline is
loaded before timing (the service loads it at start). Prints p50/p95/max in milliseconds, of wall time (what
it took on this machine, shared with whatever else runs) and of the process's CPU time (what it costs on idle
cores); the budget is 20 ms p95 added to a follow-up in the default mode. No index or encoder is needed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from eval.questions import load_questions
from service.answering.followup import FollowupResolver, HistoryTurn, warm
from service.answering.reading import entities as ner

SETS = ("eval/questions/news.jsonl", "eval/questions/news-switch.jsonl", "eval/questions/seed.jsonl")
BUDGET_P95_MS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-answers", action="store_true", help="do not warm the reader's NER cache")
    args = parser.parse_args()
    warm()
    ner.warm()
    resolver = FollowupResolver()
    times: list[float] = []
    cpu: list[float] = []
    for path in SETS:
        for item in load_questions(Path(path)):
            if not item.is_conversation:
                continue
            history: list[HistoryTurn] = []
            for turn in item.turns:
                quotes = tuple(turn.evidence)
                if not args.cold_answers and quotes:
                    ner.entities(list(quotes))
                if history:
                    started, started_cpu = time.perf_counter(), time.process_time()
                    resolution = resolver.resolve(turn.question, history)
                    times.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - started_cpu) * 1000)
                    searched = resolution.standalone
                else:
                    searched = turn.question
                short = turn.answer_any[0] if turn.answer_any else ""
                history.append(HistoryTurn(turn.question, searched, short, quotes, (), short))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"follow-ups: {len(times)}  (load average {load:.1f} on {os.cpu_count()} cores)")
    for name, values in (("wall", times), ("cpu", cpu)):
        values.sort()
        p50, p95 = statistics.median(values), values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        print(
            f"resolve {name} ms: p50 {p50:.1f}  p95 {p95:.1f}  max {values[-1]:.1f}  (budget p95 {BUDGET_P95_MS:.0f})"
        )


if __name__ == "__main__":
    main()
