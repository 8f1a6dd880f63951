"""The data model shared by ingest (writer) and service (reader): articles, chunks, spans."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import date, datetime

from pydantic import BaseModel, Field

Span = tuple[int, int]
"""A half-open character range ``[start, end)`` into an article's cleaned text."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RawArticle(BaseModel):
    """What a reader found in a file, before cleaning. ``origin`` names where it came from."""

    title: str
    text: str
    origin: str = Field(description="File path, with ':<line>' for a JSONL record.")
    format: str = Field(description="txt | md | html | json | jsonl")
    id: str | None = None
    url: str | None = None
    authors: list[str] = Field(default_factory=list)
    published: date | None = None
    source: str | None = None
    section: str | None = None


class Article(BaseModel):
    """A cleaned article as stored in the index."""

    id: str
    title: str
    text: str = Field(description="Cleaned article text; every span indexes into it.")
    url: str | None = None
    authors: list[str] = Field(default_factory=list)
    published: date | None = Field(default=None, description="Publication date (not ingest time).")
    source: str | None = None
    section: str | None = None
    origin: str
    content_hash: str
    captions: list[Span] = Field(default_factory=list, description="Spans of photo captions in ``text``.")
    ingested_at: datetime


class Chunk(BaseModel):
    """A sentence-bounded passage of an article; ``article.text[start:end] == text``."""

    id: int = Field(description="Stable integer id; also the FAISS id.")
    article_id: str
    ordinal: int
    start: int
    end: int
    text: str
    sentences: list[Span] = Field(description="Article-level spans of the sentences inside this chunk.")
    n_tokens: int
    headings: list[Span] = Field(
        default_factory=list, description="Those of ``sentences`` that are headings or subheadings (never answers)."
    )


def stable_article_id(raw: RawArticle, content_hash: str) -> str:
    """An id that survives re-ingest: the record's own id, else its url, else its file, else its content.

    A file is named by its resolved real path (symbolic links, ``.`` and ``..`` resolved, relative paths
    made absolute), so however the path was spelled on the command line the same file is one article.
    A JSONL record without its own id or url is named by its content (its line number is not stable).
    """
    if raw.id and _SAFE_ID.match(raw.id):
        return raw.id
    origin = _real_origin(raw) if raw.format != "jsonl" else None
    for key in (raw.id, raw.url, origin):
        if key:
            return hashlib.sha1(key.strip().encode("utf-8")).hexdigest()[:16]
    return content_hash[:16]


def legacy_article_id(raw: RawArticle, content_hash: str) -> str:
    """The id :func:`stable_article_id` gave before it resolved paths (from the path as spelled).

    Used by ingest to replace such an article, rather than add the same file a second time.
    """
    if raw.id and _SAFE_ID.match(raw.id):
        return raw.id
    for key in (raw.id, raw.url, raw.origin if raw.format != "jsonl" else None):
        if key:
            return hashlib.sha1(key.strip().encode("utf-8")).hexdigest()[:16]
    return content_hash[:16]


def _real_origin(raw: RawArticle) -> str:
    """The origin with its file path resolved; the ``#<n>`` of a record in a .json list is kept."""
    path, sep, record = raw.origin.strip(), "", ""
    if raw.format == "json":
        head, hash_sign, tail = path.rpartition("#")
        if hash_sign and head and tail.isdigit():
            path, sep, record = head, hash_sign, tail
    return os.path.realpath(path) + sep + record


def content_hash(title: str, text: str, meta: str = "") -> str:
    return hashlib.sha256(f"{title}\n\x00{meta}\n\x00{text}".encode()).hexdigest()


def is_safe_id(value: str) -> bool:
    return bool(_SAFE_ID.match(value))
