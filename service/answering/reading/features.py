"""The evidence a reader weighs for one (question, sentence) pair, as named numbers.

Cheap features come from the stored sentence vector and word overlap; the entity features (does the
sentence hold an entity of the kind the question asks for, beyond what the question names?) need spaCy and
are computed only for a shortlist.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from index import bm25
from service.answering.reading import entities as ner
from service.answering.reading.base import CandidateSentence, Question
from service.answering.reading.kinds import FACTUAL, LABELS

CHEAP = (
    "dense",
    "lexical",
    "idf_lexical",
    "coverage",
    "rank",
    "novelty",
    "length",
    "question_mark",
    "lead",
    "caption",
)
ENTITY = ("kind_match", "kind_missing")
FEATURES = CHEAP + ENTITY


def content_words(text: str) -> set[str]:
    return set(bm25.query_tokens(text))


def cheap_features(
    question: Question, question_words: set[str], candidate: CandidateSentence, idf: Callable[[str], float]
) -> dict[str, float]:
    words = content_words(candidate.text)
    weights = {w: idf(w) for w in question_words}
    total = sum(weights.values())
    shared = question_words & words
    n_words = len(candidate.text.split())
    return {
        "dense": float(candidate.vector @ question.vector) if candidate.vector is not None else 0.0,
        "lexical": len(shared) / len(question_words) if question_words else 0.0,
        "idf_lexical": sum(weights[w] for w in shared) / total if total else 0.0,
        "coverage": candidate.passage_coverage,
        "rank": 1.0 / candidate.passage_rank,
        "novelty": len(words - question_words) / len(words) if words else 0.0,
        "length": math.log1p(n_words) / 4.0,
        "question_mark": 1.0 if candidate.text.rstrip("\"'”’)] ").endswith("?") else 0.0,
        "lead": 1.0 if candidate.position == 0 else 0.0,
        "caption": 1.0 if candidate.caption else 0.0,
    }


def entity_features(question: Question, candidates: list[CandidateSentence]) -> None:
    """Adds ``kind_match`` / ``kind_missing`` to each candidate (both 0 for a non-factual question)."""
    if question.kind not in FACTUAL or not candidates or not ner.available():
        for c in candidates:
            c.features.update(kind_match=0.0, kind_missing=0.0)
        return
    wanted = LABELS[question.kind]
    asked = question.text.casefold()
    for candidate, found in zip(candidates, ner.entities([c.text for c in candidates]), strict=True):
        new = [e for e in found if e[2] in wanted and candidate.text[e[0] : e[1]].casefold() not in asked]
        candidate.features.update(kind_match=1.0 if new else 0.0, kind_missing=0.0 if new else 1.0)
