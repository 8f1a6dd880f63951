"""The fast sentence splitter: exact spans, and agreement with pysbd on real text."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ingest.sentences import split_sentences
from tests.conftest import NEWS, need


def texts(spans: list[tuple[int, int]], text: str) -> list[str]:
    return [text[s:e] for s, e in spans]


def test_abbreviations_and_initials_stay_together() -> None:
    text = "Dr. Smith met Mr. Jones at 3 p.m. They talked. Daniel R. DePetris works at the U.S. Institute. Why? Yes!"
    assert texts(split_sentences(text), text) == [
        "Dr. Smith met Mr. Jones at 3 p.m.",
        "They talked.",
        "Daniel R. DePetris works at the U.S. Institute.",
        "Why?",
        "Yes!",
    ]


def test_quotes_and_line_breaks() -> None:
    text = '"It was fine," he said. "We left." Then we went home\nA caption line\n\nNext paragraph.'
    assert texts(split_sentences(text), text) == [
        '"It was fine," he said.',
        '"We left."',
        "Then we went home",
        "A caption line",
        "Next paragraph.",
    ]


@given(st.text())
def test_spans_are_ordered_trimmed_and_non_empty(text: str) -> None:
    previous_end = 0
    for start, end in split_sentences(text):
        assert previous_end <= start < end <= len(text)
        piece = text[start:end]
        assert piece == piece.strip() and piece
        previous_end = end


def test_agrees_with_pysbd_on_news() -> None:
    """Compare boundaries with pysbd (the reference segmenter) on real articles: >= 90% of its sentences."""
    import pysbd

    path = need(NEWS)
    segmenter = pysbd.Segmenter(language="en", clean=False)
    agree = total = 0
    with path.open() as handle:
        for _, line in zip(range(40), handle, strict=False):
            text = json.loads(line)["text"]
            for paragraph in text.split("\n"):
                if not paragraph.strip():
                    continue
                ours = {paragraph[s:e] for s, e in split_sentences(paragraph)}
                theirs = [s.strip() for s in segmenter.segment(paragraph) if s.strip()]
                total += len(theirs)
                agree += sum(1 for s in theirs if s in ours)
    assert total > 500
    assert agree / total >= 0.90, f"agreement {agree / total:.3f}"
