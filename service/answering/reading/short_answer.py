"""The answer in a few words: an entity of the asked-for kind, as an exact span of a chosen sentence.

For a factual question (number, date, person, place, organisation) the short answer is the entity of a
matching label that the question does not already name, nearest to the words the sentence shares with the
question. Its offsets are article offsets, so ``article_text[start:end] == text`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.answering.reading import entities as ner
from service.answering.reading.base import CandidateSentence, Question
from service.answering.reading.features import content_words
from service.answering.reading.kinds import FACTUAL, LABELS


@dataclass(frozen=True)
class Span:
    text: str
    article_id: str
    start: int
    end: int
    kind: str
    sentence: CandidateSentence


def short_answer(question: Question, sentences: list[CandidateSentence]) -> Span | None:
    """The short answer from the first of ``sentences`` (best first) that holds one, or None."""
    if question.kind not in FACTUAL or not sentences or not ner.available():
        return None
    wanted = LABELS[question.kind]
    asked = question.text.casefold()
    asked_words = content_words(question.text)
    for sentence, found in zip(sentences, ner.entities([s.text for s in sentences]), strict=True):
        options = [e for e in found if e[2] in wanted and sentence.text[e[0] : e[1]].casefold() not in asked]
        if not options:
            continue
        anchors = _anchor_offsets(sentence.text, asked_words)

        def cost(entity: tuple[int, int, str], anchors: list[int] = anchors) -> tuple[int, int]:
            distance = min((abs(entity[0] - a) for a in anchors), default=0)
            return (wanted.index(entity[2]), distance)

        start, end, _ = min(options, key=cost)
        return Span(
            sentence.text[start:end],
            sentence.article_id,
            sentence.start + start,
            sentence.start + end,
            question.kind,
            sentence,
        )
    return None


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
