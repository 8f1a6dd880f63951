"""The evaluation report: answer figures beside retrieval, split into first turns and follow-ups, and the index
version read from the service in ``--url`` mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import running_server
from PIL import Image
from test_eval_runner import E2E_QUESTIONS, ITEMS, SHORT_ITEMS, ScriptedBackend

from eval import metrics, report, runner
from service.answering.schemas import ChatAnswer, ChatRequest


class Backend(ScriptedBackend):
    """The runner tests' scripted answers, with a conversation id of the service's shape."""

    def chat(self, request: ChatRequest) -> ChatAnswer:
        answer = super().chat(request)
        return answer.model_copy(update={"conversation_id": "scripted-conversation"})


def test_answered_precision() -> None:
    # answered: right, wrong, an answer to an unanswerable question (wrong), nothing to compare (skipped)
    assert metrics.answered_precision([True, False, False, None, True], [False, False, False, False, True]) == 1 / 3
    assert metrics.answered_precision([True], [True]) is None  # nothing answered
    with pytest.raises(ValueError):
        metrics.answered_precision([True], [])


def test_first_turns_and_follow_ups_are_apart(tmp_path: Path) -> None:
    run = runner.evaluate(ITEMS, Backend(), k=10, progress=False)
    assert run.summary.n_errors == 0
    positions = report.by_position(run)
    first, follow = positions["first turns"], positions["follow-ups"]
    assert (first.n_turns, follow.n_turns) == (3, 1)
    # first turns: the conversation's opening (right), the peacekeepers (wrong), GDP (abstained, right)
    assert first.answer_accuracy == pytest.approx(2 / 3, abs=1e-4)
    assert first.answered_precision == 0.5
    assert first.abstention_precision == 1.0 and first.abstention_recall == 1.0
    # the follow-up is answered (wrongly) from a passage without its evidence
    assert follow.answer_accuracy == 0.0 and follow.answered_precision == 0.0
    assert follow.abstention_recall is None  # no unanswerable follow-up
    assert run.summary.answered_precision == pytest.approx(1 / 3, abs=1e-4)
    curves = report.position_curves(run.items, 10)
    assert curves["first turns"][0] == 0.5 and curves["follow-ups"][-1] == 0.0

    report.write_report(run, tmp_path)
    markdown = (tmp_path / report.REPORT_MD).read_text()
    assert "## First turns and follow-ups" in markdown
    assert "| answered_precision | 0.500 | 0.000 |" in markdown
    assert "| answered_precision |" in markdown.split("## First turns")[0]  # in the summary table too
    with Image.open(tmp_path / report.REPORT_PNG) as image:
        assert image.size == (1600, 500)  # three panels: retrieval, answers, latency


def test_the_short_answer_figures_are_shown_beside_answer_accuracy(tmp_path: Path) -> None:
    run = runner.evaluate(ITEMS + SHORT_ITEMS, Backend(), k=10, progress=False)
    report.write_report(run, tmp_path)
    markdown = (tmp_path / report.REPORT_MD).read_text()
    summary, rest = markdown.split("## First turns and follow-ups")
    rows = [line.split(" | ")[0].strip("| ") for line in summary.splitlines() if line.startswith("| ")]
    at = rows.index("answer_accuracy")
    assert rows[at + 1 : at + 3] == ["short_answer_accuracy", "short_answer_coverage"]
    # all turns, then the groups answerable, unanswerable, follow-up
    assert "| short_answer_accuracy | 0.667 | 0.667 | – | – |" in summary
    assert "| short_answer_coverage | 0.500 | 0.500 | – | – |" in summary  # no right follow-up
    # first turns (the four short-answer items among them), follow-ups (the conversation's second turn: wrong)
    assert "| short_answer_accuracy | 0.667 | – |" in rest and "| short_answer_coverage | 0.500 | – |" in rest
    assert "- short answer: Pashinyan (right)" in rest  # its answer is wrong, so it is among the worst items
    data = json.loads((tmp_path / report.REPORT_JSON).read_text())
    assert data["summary"]["groups"]["answerable"]["short_answer_accuracy"] == pytest.approx(2 / 3, abs=1e-4)


def test_plot_draws_the_answer_figures_beside_retrieval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What is drawn, read back from the figure: the bars hold the first-turn and follow-up figures."""
    import matplotlib.pyplot as plt

    run = runner.evaluate(ITEMS, Backend(), k=10, progress=False)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to read it back
    report.plot(run, tmp_path / "report.png")
    (figure,) = figures
    retrieval, answers, latency = figure.axes
    assert "Hits@k" in retrieval.get_title() and len(retrieval.get_lines()) == 3
    labels = [tick.get_text() for tick in answers.get_xticklabels()]
    assert labels == [label for _, label in report.ANSWER_FIGURES]
    heights = [round(bar.get_height(), 4) for bar in answers.patches]
    positions = report.by_position(run)
    expected = [
        getattr(positions[name], field) or 0.0 for name in report.POSITIONS for field, _ in report.ANSWER_FIGURES
    ]
    assert heights == [round(value, 4) for value in expected]
    assert "n/a" in [text.get_text() for text in answers.texts]  # a figure without turns is marked, not a zero
    assert "latency" in latency.get_xlabel()
    assert run.index_version is None and "index version unknown" in figure.get_suptitle()
    plt.close(figure)


def test_over_http_the_report_names_the_services_index_version(seed_index: Path, encoder, tmp_path: Path) -> None:  # noqa: ANN001
    from service.answering.engine import Engine
    from service.web.api import create_app

    engine = Engine(index_root=seed_index, encoder=encoder)
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(item) for item in E2E_QUESTIONS[:1]) + "\n")
    with running_server(create_app(engine=engine)) as url:
        backend = runner.HttpBackend(url)
        try:
            assert backend.index_version() == engine.index.version  # before any answer: from /readyz
        finally:
            backend.close()
        run = runner.run_eval(questions, tmp_path / "out", url=url, progress=False)
    assert run.mode == "http" and run.index_version == engine.index.version
    markdown = (tmp_path / "out" / report.REPORT_MD).read_text()
    assert f"index version {engine.index.version}" in markdown and "unknown" not in markdown


def test_an_unreachable_service_leaves_the_version_unknown() -> None:
    backend = runner.HttpBackend("http://127.0.0.1:9", timeout_s=2)
    try:
        assert backend.index_version() is None
    finally:
        backend.close()
