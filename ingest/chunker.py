"""Sentence-bounded chunks sized in tiktoken tokens, checked against the encoder's own word-piece limit.

Every chunk is a contiguous slice of the cleaned article text (``text[start:end] == chunk.text``) made of
whole sentences, with ``overlap`` sentences shared with the previous chunk. A sentence too long for any
chunk is cut on a clause boundary (``; : , —``) or, failing that, between words. The embedded form of a
chunk is ``header + text`` and it always fits the model's maximum sequence length, so nothing is
silently truncated. Headings and subheadings (``ingest.headings``) stay in the chunks, for retrieval and
display, and are listed in ``headings`` so that answers never quote them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from ingest.headings import heading_spans
from ingest.sentences import split_sentences

Span = tuple[int, int]
Counter = Callable[[list[str]], list[int]]

_CLAUSE = re.compile(r"[;:,—–]\s+|\s+[—–]\s+")
_SPACE = re.compile(r"\s+")
HEADER_MAX_CHARS = 160
_LEVELS = (_CLAUSE, _SPACE)


@dataclass(frozen=True)
class ChunkerConfig:
    target_tokens: int = 200
    max_tokens: int = 300
    overlap_sentences: int = 1
    max_wordpieces: int = 254  # the encoder's max_seq_length less [CLS] and [SEP]


@dataclass(frozen=True)
class DraftChunk:
    ordinal: int
    start: int
    end: int
    text: str
    sentences: list[Span]
    n_tokens: int
    headings: tuple[Span, ...] = ()


def chunk_header(title: str, source: str | None, published: date | None) -> str:
    """The short line embedded before each chunk so questions naming a publication or date can match."""
    parts = [title.strip()[:HEADER_MAX_CHARS]]
    if source:
        parts.append(source)
    if published:
        parts.append(f"{published:%B} {published.day}, {published.year}")
    return " | ".join(p for p in parts if p) + "\n"


def _cut_points(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[int]:
    return [m.end() for m in pattern.finditer(text, start, end) if start < m.end() < end]


def _split_long(text: str, span: Span, fits: Callable[[str], bool], level: int = 0) -> list[Span]:
    """Cut one over-long sentence into pieces that fit: on clauses, then between words, then anywhere."""
    start, end = _trim(text, span)
    if end <= start:
        return []
    if fits(text[start:end]):
        return [(start, end)]
    if level >= len(_LEVELS):  # one unbroken run longer than the limit: halve it
        middle = (start + end) // 2
        return _split_long(text, (start, middle), fits, level) + _split_long(text, (middle, end), fits, level)
    pieces: list[Span] = []
    piece_start, previous = start, start
    for cut in [*_cut_points(text, start, end, _LEVELS[level]), end]:
        if previous > piece_start and not fits(text[piece_start:cut]):
            pieces.append((piece_start, previous))
            piece_start = previous
        previous = cut
    pieces.append((piece_start, end))
    out: list[Span] = []
    for piece in pieces:
        out.extend(
            _split_long(text, piece, fits, level + 1) if not fits(text[piece[0] : piece[1]]) else [_trim(text, piece)]
        )
    return [p for p in out if p[1] > p[0]]


def _trim(text: str, span: Span) -> Span:
    start, end = span
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def chunk_text(
    text: str,
    header: str,
    config: ChunkerConfig,
    count_tokens: Callable[[str], int],
    count_wordpieces: Counter,
) -> list[DraftChunk]:
    """Chunks of ``text`` whose ``header + text`` fits ``config.max_wordpieces``."""
    header_wp = count_wordpieces([header])[0] if header else 0
    wp_budget = config.max_wordpieces - header_wp
    if wp_budget < 16:
        raise ValueError(f"chunk header uses {header_wp} of {config.max_wordpieces} word pieces")
    token_limit = min(config.max_tokens, config.target_tokens * 2)

    def fits(piece: str) -> bool:
        return count_tokens(piece) <= token_limit and count_wordpieces([piece])[0] <= wp_budget

    sentences: list[Span] = []
    for span in split_sentences(text):
        sentences.extend(_split_long(text, span, fits))
    if not sentences:
        return []
    headings = set(heading_spans(text, sentences))
    pieces = [text[s:e] for s, e in sentences]
    tokens = [count_tokens(p) for p in pieces]
    wordpieces = count_wordpieces(pieces)

    chunks: list[DraftChunk] = []
    i = 0
    while i < len(sentences):
        j = i + 1
        total_tokens, total_wp = tokens[i], wordpieces[i]
        while (
            j < len(sentences)
            and total_tokens + tokens[j] <= config.target_tokens
            and total_wp + wordpieces[j] <= wp_budget
        ):
            total_tokens += tokens[j]
            total_wp += wordpieces[j]
            j += 1
        start, end = sentences[i][0], sentences[j - 1][1]
        body = text[start:end]
        chunks.append(
            DraftChunk(
                ordinal=len(chunks),
                start=start,
                end=end,
                text=body,
                sentences=sentences[i:j],
                n_tokens=count_tokens(body),
                headings=tuple(s for s in sentences[i:j] if s in headings),
            )
        )
        if j >= len(sentences):
            break
        i = max(i + 1, j - config.overlap_sentences)
    return chunks
