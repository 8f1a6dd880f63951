"""The evaluation report: ``report.json`` (the full record), ``report.md`` (for people) and ``report.png``.

The picture puts the answers beside retrieval, so that a good Hits@k cannot hide wrong answers: answer
accuracy, short answer accuracy and coverage (the few words a factual answer leads with), answered precision,
abstention precision and recall (on the unanswerable items) and citation support, split into first turns and
follow-ups, next to the Hits@k curves and the latency histogram.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from eval import metrics

if TYPE_CHECKING:
    from eval.runner import ItemRecord, Metrics, Report, TurnRecord

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
WORST_ITEMS = 15
# the answer figures plotted, as (Metrics field, label)
ANSWER_FIGURES = (
    ("answer_accuracy", "answer\naccuracy"),
    ("short_answer_accuracy", "short ans.\naccuracy"),
    ("short_answer_coverage", "short ans.\ncoverage"),
    ("answered_precision", "answered\nprecision"),
    ("abstention_precision", "abstention\nprecision"),
    ("abstention_recall", "abstention\nrecall"),
    ("citation_support", "citation\nsupport"),
)
POSITIONS = ("first turns", "follow-ups")


def by_position(report: Report) -> dict[str, Metrics]:
    """The summary figures of first turns and of follow-ups (turn 2 and later), apart."""
    from eval.runner import summarize

    pairs = [(item, turn) for item in report.items for turn in item.turns]
    return {
        "first turns": summarize([(item, turn) for item, turn in pairs if turn.turn == 1]),
        "follow-ups": summarize([(item, turn) for item, turn in pairs if turn.turn > 1]),
    }


def position_curves(items: Sequence[ItemRecord], k: int) -> dict[str, list[float]]:
    """Hits@1..k over the answerable first turns and over the answerable follow-ups."""
    curves = {}
    for name, keep in (("first turns", lambda n: n == 1), ("follow-ups", lambda n: n > 1)):
        ranks = [t.first_hit_rank for item in items for t in item.turns if t.hit_at_1 is not None and keep(t.turn)]
        curves[name] = metrics.hits_curve(ranks, k)
    return curves


# -------------------------------------------------------------------------------------------- writing


def write_report(report: Report, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out_dir / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")
    plot(report, out_dir / REPORT_PNG)


def _fmt(key: str, value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}" if key.endswith("_ms") else f"{value:.3f}"
    return str(value)


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(report: Report) -> str:
    summary = report.summary.model_dump(by_alias=True)
    groups = {name: group.model_dump(by_alias=True) for name, group in report.summary.groups.items()}
    names = list(groups)
    lines = [
        "# Byline evaluation",
        "",
        f"- questions: `{report.questions}`",
        f"- target: `{report.target}` ({report.mode}), index version {report.index_version or 'unknown'}",
        f"- k = {report.k}; started {report.started:%Y-%m-%d %H:%M} UTC; took {report.seconds:.1f} s",
        "",
        "## Summary",
        "",
        "| metric | all | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for key, value in summary.items():
        if key == "groups":
            continue
        cells = [_fmt(key, value), *(_fmt(key, groups[name][key]) for name in names)]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    positions = {name: figures.model_dump(by_alias=True) for name, figures in by_position(report).items()}
    lines += ["", "## First turns and follow-ups", "", "| metric | " + " | ".join(positions) + " |"]
    lines.append("|---|" + "---:|" * len(positions))
    for key, _ in (("n_turns", ""), *ANSWER_FIGURES, ("hits@5", ""), ("citation_validity", "")):
        lines.append(f"| {key} | " + " | ".join(_fmt(key, figures[key]) for figures in positions.values()) + " |")
    if report.hits_curve:
        lines += [
            "",
            "## Hits@k (answerable turns)",
            "",
            "| k | " + " | ".join(str(n) for n in range(1, len(report.hits_curve) + 1)) + " |",
            "|---|" + "---:|" * len(report.hits_curve),
            "| hits | " + " | ".join(f"{v:.3f}" for v in report.hits_curve) + " |",
        ]
    labels = Counter(turn.failure for item in report.items for turn in item.turns if turn.failure)
    lines += ["", "## Failures", ""]
    if not labels:
        lines.append("No turn failed.")
    else:
        lines += [f"- {label}: {count} turn(s)" for label, count in labels.most_common()]
        lines += [
            "",
            '"retrieval": no passage in the top k contains the evidence (or answer); "answer selection": such a',
            "passage was retrieved (or the question was unanswerable) but the answer, its citations or the",
            'abstention decision was wrong; "error": the request failed.',
        ]
    worst = sorted(
        (item for item in report.items if item.failed),
        key=lambda item: (-item.failed / len(item.turns), metrics.mean(t.reciprocal_rank for t in item.turns) or 0),
    )[:WORST_ITEMS]
    if worst:
        lines += ["", f"## Worst items ({len(worst)} of {sum(1 for i in report.items if i.failed)} with a failure)"]
    for item in worst:
        kind = "unanswerable" if item.unanswerable else f"{len(item.turns)} turn(s)"
        lines += ["", f"### {item.id} ({kind}; {item.failed} failed)", ""]
        for turn in item.turns:
            lines += _render_turn(turn, report.k)
    return "\n".join(lines) + "\n"


def _render_turn(turn: TurnRecord, k: int) -> list[str]:
    status = f"**{turn.failure}**" if turn.failure else "ok"
    out = [f"{turn.turn}. {_cell(turn.question, 200)} — {status}"]
    if turn.expected_standalone:
        out.append(
            f"   - standalone: {_cell(turn.expected_standalone, 200)} (searched: {_cell(turn.searched or '', 200)})"
        )
    if turn.answer_any or turn.evidence:
        out.append(f"   - expected: {' / '.join(turn.answer_any) or '–'}; evidence: {' / '.join(turn.evidence) or '–'}")
    if turn.error:
        out.append(f"   - error: {_cell(turn.error)}")
        return out
    answer = "(abstained) " + turn.answer if turn.abstained else turn.answer
    out.append(f"   - answer: {_cell(answer)}")
    if turn.short_answer is not None:
        verdict = {True: "right", False: "wrong", None: "not judged"}[turn.short_answer_correct]
        out.append(f"   - short answer: {_cell(turn.short_answer, 100)} ({verdict})")
    if turn.hit_at_1 is not None:
        where = f"first hit at rank {turn.first_hit_rank}" if turn.first_hit_rank else f"no hit in top {k}"
        out.append(f"   - retrieval: {where}")
    if turn.citation_problems:
        out.append(f"   - citations: {_cell('; '.join(turn.citation_problems))}")
    if turn.standalone is not None:
        rank = turn.standalone.first_hit_rank
        out.append(f"   - standalone asked fresh: {f'first hit at rank {rank}' if rank else f'no hit in top {k}'}")
    return out


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latencies = [t.latency_ms for item in report.items for t in item.turns if t.latency_ms is not None]
    positions = by_position(report)
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [1, 1.5, 1]})
    try:
        _plot_retrieval(left, report)
        _plot_answers(middle, positions)
        _plot_latency(right, latencies)
        counts = ", ".join(f"{name}: {positions[name].n_turns}" for name in POSITIONS)
        figure.suptitle(
            f"{Path(report.questions).name}: {report.summary.n_turns} turns ({counts}), k={report.k}, "
            f"index {report.index_version or 'version unknown'}"
        )
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)


def _empty(axes, text: str) -> None:  # noqa: ANN001 - matplotlib Axes
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="grey")


def _plot_retrieval(axes, report: Report) -> None:  # noqa: ANN001 - matplotlib Axes
    curves = {"all answerable": report.hits_curve, **position_curves(report.items, report.k)}
    drawn = False
    for (name, curve), style in zip(curves.items(), ("-", "--", ":"), strict=True):
        if curve:
            ks = list(range(1, len(curve) + 1))
            axes.plot(ks, curve, linestyle=style, marker="o", markersize=3, label=f"{name} (Hits@5 {_at(curve, 5)})")
            axes.set_xticks(ks)
            drawn = True
    if drawn:
        axes.legend(loc="lower right", fontsize=8)
    else:
        _empty(axes, "no answerable turns")
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("k")
    axes.set_ylabel("Hits@k")
    axes.set_title("Retrieval: Hits@k (answerable turns)")
    axes.grid(alpha=0.3)


def _at(curve: list[float], k: int) -> str:
    return f"{curve[min(k, len(curve)) - 1]:.2f}"


def _plot_answers(axes, positions: dict[str, Metrics]) -> None:  # noqa: ANN001 - matplotlib Axes
    width = 0.38
    xs = range(len(ANSWER_FIGURES))
    for offset, name in zip((-width / 2, width / 2), POSITIONS, strict=True):
        values = [getattr(positions[name], field) for field, _ in ANSWER_FIGURES]
        bars = axes.bar(
            [x + offset for x in xs], [v or 0.0 for v in values], width, label=f"{name} ({positions[name].n_turns})"
        )
        for bar, value in zip(bars, values, strict=True):
            label = "n/a" if value is None else f"{value:.2f}"
            axes.text(bar.get_x() + bar.get_width() / 2, (value or 0) + 0.02, label, ha="center", fontsize=8)
    axes.set_xticks(list(xs), [label for _, label in ANSWER_FIGURES], fontsize=9)
    axes.set_ylim(0, 1.3)
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_ylabel("share (0..1)")
    axes.set_title("Answers: first turns and follow-ups (n/a: no such turns)")
    axes.legend(loc="upper center", ncol=2, fontsize=8)
    axes.grid(alpha=0.3, axis="y")


def _plot_latency(axes, latencies: list[float]) -> None:  # noqa: ANN001 - matplotlib Axes
    if latencies:
        axes.hist(latencies, bins=min(30, max(5, len(latencies) // 2)))
        for q, style in ((50, "--"), (95, ":")):
            value = metrics.percentile(latencies, q)
            axes.axvline(value, color="black", linestyle=style, label=f"p{q} {value:.0f} ms")
        axes.legend()
    else:
        _empty(axes, "no latencies")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("turns")
    axes.set_title("Latency per turn")
