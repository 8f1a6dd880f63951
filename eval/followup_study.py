"""Follow-up resolvers side by side: follow-up vs standalone hits@5 and accuracy, topic switches, resolve time.

    .venv/bin/python -m eval.followup_study --index data/news-index [--out runs/followup-study]

Every approach answers the same conversations through the engine as the chat service would (turn 1 once,
shared; each follow-up resolved against that approach's own earlier answers) and each follow-up's written
``standalone`` form is asked fresh once. Approaches:

* ``rules``: the 730-line rule resolver this replaced (read from git at ``BASELINE_COMMIT``);
* ``history``: no rewrite; retrieve with the follow-up plus the recent turns' questions, prefer cited articles;
* ``spacy``: the spaCy rewrite only (no context in retrieval; cited articles always preferred);
* ``spacy-if-unsure``: the same, cited articles preferred only where the rewrite is unsure;
* ``spacy+history-always``: both, the earlier questions and cited articles in every follow-up's search;
* ``spacy+history, question only``: both, only where the rewrite is unsure, with the reader on the follow-up
  alone (the default before the conversation joined reading);
* ``spacy+history``: the same, and every follow-up's reading counts the recent questions in passage coverage and
  favours the articles they cited (the default resolver);
* ``spacy+history+llm`` (only when named in ``--only``): the default plus the local LLM rewriter (followup_llm).

``history``, ``spacy`` and ``spacy+history`` share the new resolver's topic-switch test. A switch passes when
the searched question is the user's own, with no context and no preferred articles.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eval import metrics
from eval.questions import QuestionItem, load_questions
from eval.runner import retrieval_figures
from service.answering import followup
from service.answering.engine import Engine
from service.answering.schemas import Answer, AskRequest

BASELINE_COMMIT = "46a14c43d13742573b88a6b3c89609aa2fdbf7b3"
SETS = ("eval/questions/news.jsonl", "eval/questions/seed.jsonl", "eval/questions/news-switch.jsonl")
K = 10


@dataclass(frozen=True)
class Plan:
    standalone: str
    context: str
    prefer: list[str]
    conversation: str = ""  # counted in passage coverage (the default resolver: every follow-up)
    cited: list[str] = field(default_factory=list)  # articles whose sentences the reader favours


Approach = Callable[[str, list[followup.HistoryTurn]], Plan]


def _baseline() -> Approach:
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:service/answering/followup.py"], capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("followup_rules")
    sys.modules["followup_rules"] = module
    exec(compile(source, "followup_rules.py", "exec"), module.__dict__)  # noqa: S102 - our own file, from git

    def resolve(question: str, history: list[followup.HistoryTurn]) -> Plan:
        turns = [
            module.HistoryTurn(t.question, t.standalone, t.answer_text, t.quotes, t.cited_article_ids) for t in history
        ]
        r = module.resolve_followup(question, turns)
        return Plan(r.standalone, "", r.prefer_articles)

    return resolve


def _new(rewrite: bool, context: bool, only_unsure: bool = False, coverage: bool = True) -> Approach:
    def resolve(question: str, history: list[followup.HistoryTurn]) -> Plan:
        r = followup.resolve_followup(question, history)
        if r.method == "switch":
            return Plan(question, "", [])
        recent = " ".join(t.question for t in history[-followup.CONTEXT_TURNS :])
        standalone = r.standalone if rewrite else question
        searched = " ".join(t.searched for t in history[-followup.CONTEXT_TURNS :])
        if only_unsure:  # the resolver's own choice (the default)
            reading = (r.conversation, r.cited) if coverage else ("", [])
            return Plan(standalone, r.context if context else "", r.prefer_articles, *reading)
        return Plan(standalone, (searched if rewrite else recent) if context else "", followup.prefer_articles(history))

    return resolve


def _llm() -> Approach:
    from index.settings import get_settings
    from service.answering.followup_llm import LlmRewriter

    resolver = followup.FollowupResolver(rewriter=LlmRewriter(get_settings()))

    def resolve(question: str, history: list[followup.HistoryTurn]) -> Plan:
        r = resolver.resolve(question, history)
        return Plan(r.standalone, r.context, r.prefer_articles, r.conversation, r.cited)

    return resolve


def run(engine: Engine, items: list[QuestionItem], approaches: dict[str, Approach]) -> dict[str, list[dict]]:
    first: dict[str, Answer] = {}
    fresh: dict[str, Answer] = {}
    rows: dict[str, list[dict]] = {name: [] for name in approaches}
    for item in items:
        ask = AskRequest(question=item.turns[0].question, k=K, as_of=item.date)
        first[item.id] = first.get(item.id) or engine.ask(ask)
        for name, approach in approaches.items():
            history = [followup.HistoryTurn.from_answer(ask.question, first[item.id])]
            for position, turn in enumerate(item.turns[1:], start=2):
                started = time.perf_counter()
                plan = approach(turn.question, history)
                resolve_ms = (time.perf_counter() - started) * 1000
                request = AskRequest(question=turn.question, k=K, as_of=item.date)
                answer = engine.ask(
                    request, plan.standalone, plan.prefer or None, plan.context or None, plan.conversation, plan.cited
                )
                history.append(followup.HistoryTurn.from_answer(turn.question, answer))
                row = {
                    "id": item.id,
                    "turn": position,
                    "question": turn.question,
                    "searched": plan.standalone,
                    "context": plan.context,
                    "switch": turn.topic_switch,
                    "resolve_ms": round(resolve_ms, 2),
                    "hit5": retrieval_figures(turn, [p.text for p in answer.passages], K).get("hit_at_5"),
                    "correct": metrics.answer_correct(answer.answer, turn.answer_any, answer.abstained, False),
                }
                if turn.topic_switch:
                    row["switch_pass"] = plan.standalone == turn.question and not plan.context and not plan.prefer
                elif turn.standalone:
                    key = f"{item.id}:{position}"
                    if key not in fresh:
                        fresh[key] = engine.ask(AskRequest(question=turn.standalone, k=K, as_of=item.date))
                    alone = fresh[key]
                    row["standalone_hit5"] = retrieval_figures(turn, [p.text for p in alone.passages], K).get(
                        "hit_at_5"
                    )
                    row["standalone_correct"] = metrics.answer_correct(
                        alone.answer, turn.answer_any, alone.abstained, False
                    )
                rows[name].append(row)
    return rows


def _mean(values: list) -> str:
    values = [float(v) for v in values if v is not None]
    return f"{statistics.fmean(values):.3f}" if values else "-"


def _pct(values: list[float], q: int) -> str:
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(len(values) * q / 100))]:.1f}" if values else "-"


def table(rows: dict[str, list[dict]], sets: str) -> str:
    lines = [
        f"| approach ({sets}) | follow-up hits@5 | standalone hits@5 | follow-up acc | standalone acc "
        "| switches passed | resolve p50 ms | resolve p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, got in rows.items():
        follow = [r for r in got if not r["switch"]]
        switches = [r for r in got if r["switch"]]
        times = [r["resolve_ms"] for r in got]
        lines.append(
            f"| {name} | {_mean([r['hit5'] for r in follow])} | {_mean([r.get('standalone_hit5') for r in follow])} "
            f"| {_mean([r['correct'] for r in follow])} | {_mean([r.get('standalone_correct') for r in follow])} "
            f"| {sum(r['switch_pass'] for r in switches)}/{len(switches)} | {_pct(times, 50)} | {_pct(times, 95)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/followup-study"))
    parser.add_argument("--only", nargs="*", help="approach names to run (default: all)")
    args = parser.parse_args()
    approaches: dict[str, Approach] = {
        "rules": _baseline(),
        "history": _new(rewrite=False, context=True),
        "spacy": _new(rewrite=True, context=False),
        "spacy-if-unsure": _new(rewrite=True, context=False, only_unsure=True),
        "spacy+history-always": _new(rewrite=True, context=True),
        "spacy+history, question only": _new(rewrite=True, context=True, only_unsure=True, coverage=False),
        "spacy+history": _new(rewrite=True, context=True, only_unsure=True),
    }
    if args.only:
        approaches = {k: v for k, v in approaches.items() if k in args.only}
        if "spacy+history+llm" in args.only:  # opt-in: loads the local model (followup_llm)
            approaches["spacy+history+llm"] = _llm()
    engine = Engine(index_root=args.index)
    followup.warm()
    args.out.mkdir(parents=True, exist_ok=True)
    everything: dict[str, list[dict]] = {name: [] for name in approaches}
    for path in SETS:
        items = [i for i in load_questions(Path(path)) if i.is_conversation]
        rows = run(engine, items, approaches)
        print(table(rows, Path(path).stem), flush=True)
        for name, got in rows.items():
            everything[name].extend(got)
    print(table(everything, "all"))
    (args.out / "rows.json").write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
