"""The distilled judge: a tiny student trained on judge margins exports to int8 ONNX, reads like its PyTorch self,
and drives the judge reader's ordering and abstention; without its graph it is refused with a clear error."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from index.settings import get_settings
from service.answering.reading import make_reader
from service.answering.reading.cross_encoder import CrossEncoderScorer
from service.answering.reading.distilled import (
    DISTILLED_DIR,
    ONNX_FILE,
    DistilledJudge,
    DistilledReader,
    DistilledUnavailable,
    export,
)
from service.answering.reading.train_cross_encoder import judge_pairs, train
from tests.conftest import reader_candidates, reader_question

SUBJECTS = ["The crew", "The astronauts", "The team", "The pilots", "The sailors"]
QUESTION = "The crew returned after how many days?"
STATES = "The crew spent 371 days away before returning."
ABOUT = "The crew were welcomed by their families on the dock."


def labels_file(path: Path, n: int = 40) -> Path:
    """label_judge's format: a stating sentence gets a high margin, an on-topic one a low margin."""
    rng = random.Random(5)
    with path.open("w") as handle:
        for i in range(n):
            who = SUBJECTS[i % len(SUBJECTS)]
            candidates = [
                {"text": f"{who} spent {rng.randint(100, 400)} days away before returning.", "margin": 2.0},
                {"text": f"{who} were welcomed by their families on the dock.", "margin": -3.0},
            ]
            for c in candidates:
                c.update(article_id="a", start=0, positive=False, feature_score=0.5)
            row = {"question_key": str(i), "question": f"{who} returned after how many days?", "article_id": "a"}
            handle.write(json.dumps({**row, "candidates": candidates}) + "\n")
    return path


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reader")
    labels = labels_file(root / "labels.jsonl")
    assert len(judge_pairs(labels, frozenset({"a"}))) == 0  # a held-out article gives no question and no sentence
    pairs = judge_pairs(labels)
    assert len(pairs) == 80 and {p.label for p in pairs} == {2.0, -3.0} and {p.source for p in pairs} == {"judge"}
    student = root / DISTILLED_DIR
    meta = train(
        pairs,
        student,
        layers=1,
        max_length=32,
        batch_size=8,
        epochs=6,
        lr=3e-4,
        threads=1,
        log_every=0,
        loss_kind="margin-mse",
    )
    assert meta["steps"] > 0 and "MSE" in str(meta["loss"])
    assert export(student, max_length=32) == student / ONNX_FILE
    return root


def test_the_int8_graph_reads_like_the_pytorch_student(reader_dir: Path) -> None:
    torch_student = CrossEncoderScorer(reader_dir / DISTILLED_DIR, threads=1, max_length=32)
    onnx_student = DistilledJudge(reader_dir / DISTILLED_DIR, threads=1, max_length=32)
    sentences = [STATES, ABOUT, "An unrelated line about the weather, long enough to pad the batch a little."]
    expected = torch_student.logits(QUESTION, sentences)
    got = onnx_student.margins(QUESTION, sentences)
    assert len(got) == 3 and all(abs(a - b) < 0.35 for a, b in zip(got, expected, strict=True)), (got, expected)
    assert got[0] > got[1]  # it learnt the margins: stating above on-topic
    assert onnx_student.margins(QUESTION, []) == []


def test_the_distilled_reader_moves_a_stating_sentence_first_and_lowers_an_unlikely_best(reader_dir: Path) -> None:
    settings = get_settings().model_copy(update={"reader_dir": reader_dir, "distilled_threads": 1})
    reader = make_reader("distilled", reader_dir, settings)
    assert isinstance(reader, DistilledReader) and reader.name == "distilled+features"
    question = reader_question(QUESTION)
    ranked = reader.read(question, reader_candidates(question, [ABOUT, "The crew met the press.", STATES]))
    assert ranked[0].text == STATES and all("judge_margin" in c.features for c in ranked)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    # the stating sentence gains on its feature score, the on-topic one loses: a question whose best sentences
    # all look unlikely to state the answer falls towards abstention
    texts = [ABOUT, "The crew met the press.", STATES]
    plain = make_reader("features", reader_dir)
    before = {c.text: c.score for c in plain.read(question, reader_candidates(question, texts))}
    after = {c.text: c.score for c in reader.read(question, reader_candidates(question, texts))}
    assert after[STATES] > before[STATES] and after[ABOUT] < before[ABOUT], (before, after)


def test_without_its_graph_the_distilled_reader_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DistilledUnavailable, match="make reader-distilled"):
        make_reader("distilled", tmp_path, get_settings())
