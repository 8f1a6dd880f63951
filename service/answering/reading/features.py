"""The evidence a reader weighs for one (question, sentence) pair, as named numbers.

Cheap features come from the stored sentence vector and word overlap; the entity features (does the
sentence hold an entity of the kind the question asks for, beyond what the question names?) need spaCy and
are computed only for a shortlist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from index import bm25
from service.answering.reading import entities as ner
from service.answering.reading.base import CandidateSentence, Question
from service.answering.reading.kinds import FACTUAL, answer_entities

_QUOTES = ('"', "“", "”")
_SAYING = frozenset("say says said tell tells told call calls called describe described write wrote ask asked".split())


def _asks_for_words(question: str) -> bool:
    """A question about what someone said ("What did Chopra call Wells Fargo?"): quotes are likely answers."""
    return bool(_SAYING & {w.strip("?,.").lower() for w in question.split()})


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
    "focus",
    "quote_match",
    "cited",
)
ENTITY = ("kind_match", "kind_missing", "stale_year")
FEATURES = CHEAP + ENTITY


def content_words(text: str) -> set[str]:
    return set(bm25.query_tokens(text))


# "vice president" is not the president, "second-most" not the most, "former CEO" not the CEO
_QUALIFIER = re.compile(r"\b(vice|deputy|former|ex|assistant|acting|interim|second|third)[- ]([a-z]+)", re.I)
_WORD_RE = re.compile(r"[A-Za-z]+")


def qualified_words(sentence: str, question: str) -> set[str]:
    """Words of ``sentence`` that occur there only behind a qualifier the question does not use ("Terry Dittes,
    UAW vice president" does not say who the president is): they do not count as the question's words."""
    asked = {w.lower() for w in _WORD_RE.findall(question)}
    behind = {m.group(2) for m in _QUALIFIER.finditer(sentence) if m.group(1).lower() not in asked}
    if not behind:
        return set()
    bare = _QUALIFIER.sub(" ", sentence)
    return content_words(" ".join(behind)) - content_words(bare)


def asks(sentence: str) -> bool:
    """Whether a sentence is a question. One cut inside an open quotation is not: the splitter ends 'Noah
    shared the news on his podcast “What Now?' at the title's question mark."""
    if not sentence.rstrip("\"'”’)] ").endswith("?"):
        return False
    return sentence.count("“") <= sentence.count("”")


def cheap_features(
    question: Question,
    question_words: set[str],
    candidate: CandidateSentence,
    idf: Callable[[str], float],
    cited: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """``cited``: the articles a follow-up's recent turns cited (``cited`` is 1 for their sentences)."""
    words = content_words(candidate.text) - qualified_words(candidate.text, question.text)
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
        "question_mark": 1.0 if asks(candidate.text) else 0.0,
        "lead": 1.0 if candidate.position == 0 else 0.0,
        "caption": 1.0 if candidate.caption else 0.0,
        "quote_match": 1.0 if _asks_for_words(question.text) and any(q in candidate.text for q in _QUOTES) else 0.0,
        "cited": 1.0 if candidate.article_id in cited else 0.0,
    }


def focus_features(question_words: set[str], candidates: list[CandidateSentence]) -> None:
    """Adds ``focus``: the share of the question's words a sentence holds, each word weighted by how few of the
    candidates hold it. Words every candidate shares name the topic ("Singapore Grand Prix"); the rare ones
    name what is asked ("finished second"), and the sentence that answers tends to hold those."""
    words = [content_words(c.text) & question_words for c in candidates]
    n = len(candidates)
    weight = {w: math.log(1 + n / (1 + sum(w in ws for ws in words))) for w in question_words}
    total = sum(weight.values())
    for candidate, shared in zip(candidates, words, strict=True):
        candidate.features["focus"] = sum(weight[w] for w in shared) / total if total else 0.0


_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")


def entity_features(question: Question, candidates: list[CandidateSentence]) -> None:
    """Adds ``kind_match`` / ``kind_missing`` (both 0 for a non-factual question) and ``stale_year`` (the question
    names a recent period and the sentence's dates are all in earlier years, or a factual question names a year
    and the sentence's dates are all in the few years before it) to each candidate."""
    for c in candidates:
        c.features.update(kind_match=0.0, kind_missing=0.0, stale_year=0.0)
    factual = question.kind in FACTUAL
    if not (factual or question.period) or not candidates or not ner.available():
        return
    named = _named_year(question.text) if factual else None  # NER runs for a factual question anyway
    for candidate, found in zip(candidates, ner.entities([c.text for c in candidates]), strict=True):
        if factual:
            new = answer_entities(question.kind, question.text, candidate.text, found)
            candidate.features.update(kind_match=1.0 if new else 0.0, kind_missing=0.0 if new else 1.0)
        years = [int(y) for e in found if e[2] == "DATE" for y in _YEAR.findall(candidate.text[e[0] : e[1]])]
        if not years:
            continue
        # a question about "this week" is rarely answered by a sentence dated only in earlier years, nor one about
        # "the 2023 Nobel Prize" by a sentence about a recent earlier edition ("Annie Ernaux in 2022"); a
        # sentence that recalls a distant past ("the 1930 World Cup" for 2030) may still answer it
        before_period = bool(question.period) and max(years) < question.period[0].year
        earlier_edition = bool(named) and named - RECENT_EDITIONS <= max(years) < named
        candidate.features["stale_year"] = 1.0 if before_period or earlier_edition else 0.0


RECENT_EDITIONS = 5  # years
_LOOKS_BACK = frozenset("before after since until previous prior earlier last ago".split())


def _named_year(question: str) -> int | None:
    """The one year a question names ("Who won the 2023 Nobel Prize?"), unless it looks back from it ("the record
    before 2023") or names several."""
    years = set(_YEAR.findall(question))
    if len(years) != 1 or _LOOKS_BACK & {w.lower() for w in _WORD_RE.findall(question)}:
        return None
    return int(years.pop())
