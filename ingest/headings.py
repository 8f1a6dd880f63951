"""Headings and subheadings of an article: kept for retrieval and display, never quoted as answers.

A paragraph is a heading when it is one short line that does not read as a statement: it has no final
punctuation ("Flights to Europe", "Photos: the storm"), or it is a question standing alone before the
paragraph that answers it ("Who is Peter Murrell?", common in explainers). A question inside a
paragraph of prose is not a heading; neither is the last paragraph (nothing follows it to answer).
"""

from __future__ import annotations

import re

Span = tuple[int, int]

MAX_HEADING_WORDS = 25
_STATEMENT_END = re.compile(r"[.!…:;][\"'”’)\]]*$")
_QUESTION_END = re.compile(r"\?[\"'”’)\]]*$")
_OPENING_QUOTE = re.compile(r"^[\"“‘']")


def _paragraphs(text: str) -> list[Span]:
    spans: list[Span] = []
    start = 0
    for line in text.split("\n"):
        end = start + len(line)
        stripped = line.strip()
        if stripped:
            left = start + (len(line) - len(line.lstrip()))
            spans.append((left, left + len(stripped)))
        start = end + 1
    return spans


def is_heading_line(line: str, followed: bool) -> bool:
    """Whether one paragraph (a whole line) reads as a heading; ``followed``: another paragraph comes after it."""
    words = line.split()
    if not words or len(words) > MAX_HEADING_WORDS:
        return False
    if _QUESTION_END.search(line):
        return followed and not _OPENING_QUOTE.match(line)  # a quoted question is speech, not a heading
    return not _STATEMENT_END.search(line)


def heading_spans(text: str, sentences: list[Span]) -> list[Span]:
    """The sentence spans of ``text`` that are headings: the sentences of one-sentence heading paragraphs."""
    paragraphs = _paragraphs(text)
    by_start: dict[int, Span] = {}
    for span in sentences:
        by_start.setdefault(span[0], span)
    headings: list[Span] = []
    for position, (start, end) in enumerate(paragraphs):
        sentence = by_start.get(start)
        if sentence is None or sentence[1] != end:
            continue  # the paragraph holds more than one sentence (or a sentence cut for length): prose
        followed = position + 1 < len(paragraphs)
        if is_heading_line(text[start:end], followed):
            headings.append(sentence)
    return headings
