"""The cross-encoder reader: a tiny one trained for a few steps loads, scores 0..1 and reranks; none is refused."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from service.answering.reading import CandidateSentence, Question, make_reader
from service.answering.reading.cross_encoder import CE_DIR, CrossEncoderUnavailable, load_cross_encoder_reader
from service.answering.reading.train_cross_encoder import Pair, load_pairs, save_pairs, train

SUBJECTS = ["The crew", "The astronauts", "The team", "The pilots", "The sailors"]


def pairs(n: int = 50) -> list[Pair]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        who = SUBJECTS[i % len(SUBJECTS)]
        days = rng.randint(100, 400)
        question = f"{who} returned after how many days?"
        if i % 2 == 0:
            out.append(Pair(question, f"{who} spent {days} days away before returning.", 1.0, "a", "cloze"))
        else:
            out.append(Pair(question, f"{who} were welcomed by their families on the dock.", 0.0, "a", "cloze"))
    return out


def candidate(text: str, start: int) -> CandidateSentence:
    return CandidateSentence("a1", 1, start, start + len(text), text, 1, 1, np.array([1.0, 0.0]), 0.5, features={})


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reader")
    data = pairs()
    save_pairs(root / "pairs.jsonl", data)
    assert load_pairs(root / "pairs.jsonl") == data
    meta = train(data, root / CE_DIR, layers=1, max_length=32, batch_size=10, epochs=4, lr=3e-4, threads=1, log_every=0)
    assert meta["steps"] > 0 and meta["pairs"] == 50 and meta["layers"] == 1
    return root


def test_a_trained_cross_encoder_loads_and_scores_candidates(weights_dir: Path) -> None:
    reader = load_cross_encoder_reader(weights_dir, make_reader("features", weights_dir))
    assert reader.name == "cross-encoder"
    answer = candidate("The crew spent 371 days away before returning.", 0)
    others = [candidate(f"The crew were welcomed by their families on day {i}.", 60 + 60 * i) for i in range(10)]
    asked = Question("The crew returned after how many days?", np.array([1.0, 0.0]), "number")
    ranked = reader.read(asked, others[:3] + [answer] + others[3:])
    assert len(ranked) == 11 and {id(c) for c in ranked} == {id(c) for c in others + [answer]}
    assert all(0.0 <= c.score <= 1.0 for c in ranked)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    head = [c for c in ranked if "cross_encoder" in c.features]
    assert len(head) == 8  # the feature reader's shortlist was reranked, the rest kept below it
    assert answer in head  # the hand-set features tie on these, so the shortlist is the first 8
    assert ranked[0] is answer, [(c.text, c.score) for c in ranked]  # 20 steps on 50 pairs learnt the pattern


def test_without_weights_the_cross_encoder_reader_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CrossEncoderUnavailable, match="train_cross_encoder"):
        load_cross_encoder_reader(tmp_path, make_reader("features", tmp_path))
