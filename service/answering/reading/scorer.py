"""The default reader: a linear model over :mod:`features`, squashed to 0..1.

By default its weights are the hand-set ones below: the earlier answer scoring (cosine plus word overlap plus
passage rank) plus passage coverage, a penalty for questions and captions, and entity evidence (a sentence
holding the asked-for kind of entity), and for a follow-up a little for sentences of the articles the recent turns
cited. ``make reader`` (``reading.train``) fits the same features on
questions the corpus itself holds, into ``<data>/reader/reader.json`` (a cache, never committed), used with
``BYLINE_READER=features-trained``; on our dev sets those weights read worse (README "Reading"), so they
are not the default. Every answer names the reader that chose it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from service.answering.reading.base import CandidateSentence, Question, sigmoid
from service.answering.reading.features import CHEAP, FEATURES, entity_features

log = logging.getLogger("byline.reading")

READER_FILE = "reader.json"


class ReaderWeights(BaseModel):
    features: list[str]
    weights: list[float]
    bias: float
    trained: dict[str, object] = Field(default_factory=dict, description="How and on what it was trained.")


# dense 0.7 / lexical 0.3 / rank 0.05 was the earlier score; scaled so that a good sentence reads about 0.6.
_HAND_SET = {
    "dense": 7.0,
    "lexical": 3.0,
    "coverage": 2.0,
    "rank": 0.5,
    "question_mark": -3.0,
    "caption": -1.0,
    "kind_match": 0.6,
    "kind_missing": -1.5,
    "stale_year": -2.5,
    "cited": 0.5,
}
UNTRAINED = ReaderWeights(
    features=list(FEATURES),
    weights=[_HAND_SET.get(name, 0.0) for name in FEATURES],
    bias=-6.0,
    trained={"source": "hand-set"},
)


def load_weights(directory: Path) -> ReaderWeights | None:
    path = directory / READER_FILE
    if not path.exists():
        return None
    try:
        weights = ReaderWeights.model_validate_json(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("reader weights %s unusable (%s): using the untrained reader", path, exc)
        return None
    if weights.features != list(FEATURES) or len(weights.weights) != len(FEATURES):
        log.warning("reader weights %s were trained on other features: using the untrained reader", path)
        return None
    return weights


class FeatureReader:
    """Scores every candidate on the cheap features, then the best ones again with entity evidence.

    NER costs ~2.4 ms a sentence here, most of a new question's reading time, so it runs on a shortlist: the best
    ``shortlist`` (5) by the cheap score, then ``step`` more at a time while a sentence not yet read could still
    overtake the best one (its cheap logit plus the largest entity bonus beats the best full logit), up to
    ``max_shortlist``. So the best sentence is the one a full pass would choose, at five sentences' cost for most
    questions: a penalty on the leaders (a sentence dated only in earlier years, or holding no entity of the
    asked-for kind) widens the search."""

    def __init__(
        self, weights: ReaderWeights | None = None, shortlist: int = 5, step: int = 3, max_shortlist: int = 14
    ) -> None:
        self.weights = weights or UNTRAINED
        self.name = "features-trained" if weights is not None else "features"
        self.shortlist = shortlist
        self.step = step
        self.max_shortlist = max(max_shortlist, shortlist)
        self._w = np.array(self.weights.weights, dtype=np.float64)
        self._cheap = len(CHEAP)
        self._bonus = float(np.clip(self._w[self._cheap :], 0.0, None).sum())  # the most entity evidence can add

    def _logit(self, features: dict[str, float], names: tuple[str, ...]) -> float:
        values = np.array([features.get(n, 0.0) for n in names], dtype=np.float64)
        return float(values @ self._w[: len(names)] + self.weights.bias)

    def read(self, question: Question, candidates: list[CandidateSentence]) -> list[CandidateSentence]:
        cheap = {id(c): self._logit(c.features, CHEAP) for c in candidates}
        ranked = sorted(candidates, key=lambda c: -cheap[id(c)])
        read, best = 0, -math.inf
        n = min(self.shortlist, len(ranked))
        while read < n:
            entity_features(question, ranked[read:n])
            for c in ranked[read:n]:
                full = self._logit(c.features, FEATURES)
                c.score = sigmoid(full)
                best = max(best, full)
            read = n
            if n < min(len(ranked), self.max_shortlist) and cheap[id(ranked[n])] + self._bonus > best:
                n = min(n + self.step, len(ranked), self.max_shortlist)
        for c in ranked[read:]:
            c.score = sigmoid(cheap[id(c)])
        head = sorted(ranked[:read], key=lambda c: -c.score)
        return head + ranked[read:]

    def describe(self) -> dict[str, object]:
        return {"name": self.name, **self.weights.trained}


def save_weights(directory: Path, weights: ReaderWeights) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / READER_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(weights.model_dump(), indent=2))
    tmp.replace(path)
    return path
