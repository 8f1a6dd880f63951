"""The answer in a few words: an entity of the asked-for kind, as an exact span of a chosen sentence.

For a factual question (number, age, date, person, place, organisation, name) the short answer is an entity of a
matching label that the question does not already name, the one the chosen sentences agree on. Its offsets
are article offsets, so ``article_text[start:end] == text`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.answering.reading import entities as ner
from service.answering.reading.base import CandidateSentence, Question
from service.answering.reading.features import content_words
from service.answering.reading.kinds import FACTUAL, LABELS, answer_entities


@dataclass(frozen=True)
class Span:
    text: str
    article_id: str
    start: int
    end: int
    kind: str
    sentence: CandidateSentence

    @classmethod
    def of(cls, sentence: CandidateSentence, start: int, end: int, kind: str) -> Span:
        """The span ``start:end`` of ``sentence`` (offsets in the sentence), with its article offsets."""
        return cls(
            sentence.text[start:end], sentence.article_id, sentence.start + start, sentence.start + end, kind, sentence
        )


def short_answer(question: Question, sentences: list[CandidateSentence]) -> Span | None:
    """The short answer the chosen ``sentences`` (best first) agree on, or None.

    Each sentence proposes its best entity of the asked-for kind (by label preference, then nearness to the
    question's words; for a person, the first named: measured on the dev sets, the subject of a news sentence is
    who it is about, "Max Verstappen held off the challenge of Carlos Sainz to triumph at the Canadian Grand
    Prix"); proposals with the same text pool their sentences' reader scores, and the best-scored
    proposal wins: two sentences saying "371" outvote one saying "355". Its span is taken from the best
    sentence that proposed it.
    """
    if question.kind not in FACTUAL or not sentences:
        return None
    for sentence in sentences:  # a reader that copies spans (the LLM reader) has verified its own
        if "llm_span_start" in sentence.features:
            start, end = int(sentence.features["llm_span_start"]), int(sentence.features["llm_span_end"])
            if 0 <= start < end <= len(sentence.text):
                return Span.of(sentence, start, end, question.kind)
    if not ner.available():
        return None
    wanted = LABELS[question.kind]
    asked_words = content_words(question.text)
    votes: dict[str, float] = {}
    first: dict[str, Span] = {}
    for sentence, found in zip(sentences, ner.entities([s.text for s in sentences]), strict=True):
        options = answer_entities(question.kind, question.text, sentence.text, found)
        if not options:
            continue
        anchors = _anchor_offsets(sentence.text, asked_words)

        def cost(entity: tuple[int, int, str], anchors: list[int] = anchors) -> tuple[int, int]:
            if question.kind == "person":  # the person a sentence is about comes first, as its subject
                return (wanted.index(entity[2]), entity[0])
            distance = min((abs(entity[0] - a) for a in anchors), default=0)
            return (wanted.index(entity[2]), distance)

        start, end, _ = min(options, key=cost)
        key = _vote_key(question.kind, sentence.text[start:end])
        votes[key] = votes.get(key, 0.0) + max(sentence.score, 1e-6)
        first.setdefault(key, Span.of(sentence, start, end, question.kind))
    if not votes:
        return None
    return first[max(votes, key=lambda k: votes[k])]


def _vote_key(kind: str, text: str) -> str:
    """What two proposals must share to be the same answer: the digits of a number ("371" = "371 days")."""
    if kind in ("number", "age"):
        digits = "".join(ch for ch in text.split()[0] if ch.isdigit() or ch in ".,") if text.split() else ""
        if any(ch.isdigit() for ch in digits):
            return digits.replace(",", "")
    return " ".join(text.casefold().split())


def _anchor_offsets(text: str, words: set[str]) -> list[int]:
    """Character offsets of the sentence's words that the question shares (by stem)."""
    offsets = []
    position = 0
    for token in text.split():
        position = text.find(token, position)
        if content_words(token) & words:
            offsets.append(position)
        position += len(token)
    return offsets
