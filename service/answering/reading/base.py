"""The reading stage's interface: score candidate sentences for how well each answers the question.

A :class:`Reader` gets the question (text, kind, vector) and the candidate sentences of the top passages,
and returns one probability per sentence that the sentence states the answer. The answer composer uses the
scores to choose sentences and the best one to decide whether to abstain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import numpy as np


@dataclass
class CandidateSentence:
    """A sentence of a retrieved passage, with the evidence the reader may use."""

    article_id: str
    chunk_id: int
    start: int  # character offsets in the article's cleaned text
    end: int
    text: str
    passage_rank: int  # 1-based rank of the passage it came from
    position: int  # sentence number within its article's first chunk it appears in (0 = lead)
    vector: np.ndarray | None = None  # unit vector of the sentence (stored at ingest, or embedded now)
    passage_coverage: float = 0.0  # idf-weighted share of the question's words in the passage and title
    caption: bool = False  # a photo caption (Article.captions): citable, but rarely the answer
    features: dict[str, float] = field(default_factory=dict)
    score: float = 0.0  # the reader's probability that this sentence answers the question


@dataclass(frozen=True)
class Question:
    text: str
    vector: np.ndarray
    kind: str  # see reading.kinds: number, date, person, place, organisation, name, thing, reason, manner
    period: tuple[date, date] | None = None  # the time the question names ("this week"), relative to its as_of


class ReaderUnavailable(RuntimeError):
    """An opt-in reader's model or weights are missing or unusable; the message says what to install or build."""


class Reader(Protocol):
    """Scores candidate sentences in place (``CandidateSentence.score``, 0..1) and returns them best first."""

    name: str

    def read(self, question: Question, candidates: list[CandidateSentence]) -> list[CandidateSentence]: ...


def sigmoid(x: float) -> float:
    """A logit as a probability, clipped so that ``math.exp`` never overflows."""
    return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, x))))


def logit(p: float) -> float:
    """A probability as a logit (the inverse of :func:`sigmoid`), clipped away from 0 and 1."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))
