"""SQLite store of articles (metadata and cleaned text) and chunks (text and spans)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path

from index.models import Article, Chunk

METADATA = "metadata.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    url TEXT,
    authors TEXT NOT NULL,
    published TEXT,
    source TEXT,
    section TEXT,
    origin TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    captions TEXT NOT NULL,
    ingested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_hash ON articles(content_hash);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    sentences TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    headings TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS chunks_article ON chunks(article_id, ordinal);
"""

_ARTICLE_COLUMNS = (
    "id, title, text, url, authors, published, source, section, origin, content_hash, captions, ingested_at"
)
_META_COLUMNS = _ARTICLE_COLUMNS.replace("text, ", "")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path)
        conn.executescript(SCHEMA)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def write_article(conn: sqlite3.Connection, article: Article) -> None:
    conn.execute("DELETE FROM articles WHERE id = ?", (article.id,))
    conn.execute(
        f"INSERT INTO articles ({_ARTICLE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            article.id,
            article.title,
            article.text,
            article.url,
            json.dumps(article.authors),
            article.published.isoformat() if article.published else None,
            article.source,
            article.section,
            article.origin,
            article.content_hash,
            json.dumps(article.captions),
            article.ingested_at.isoformat(),
        ),
    )


def write_chunks(conn: sqlite3.Connection, chunks: Iterable[Chunk]) -> None:
    conn.executemany(
        'INSERT INTO chunks (id, article_id, ordinal, start, "end", text, sentences, n_tokens, headings) '
        "VALUES (?,?,?,?,?,?,?,?,?)",
        (
            (
                c.id,
                c.article_id,
                c.ordinal,
                c.start,
                c.end,
                c.text,
                json.dumps(c.sentences),
                c.n_tokens,
                json.dumps(c.headings),
            )
            for c in chunks
        ),
    )


def delete_article(conn: sqlite3.Connection, article_id: str) -> list[int]:
    """Delete an article and its chunks; return the deleted chunk ids."""
    ids = [row[0] for row in conn.execute("SELECT id FROM chunks WHERE article_id = ?", (article_id,))]
    conn.execute("DELETE FROM chunks WHERE article_id = ?", (article_id,))
    conn.execute("DELETE FROM articles WHERE id = ?", (article_id,))
    return ids


def article_hashes(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT id, content_hash FROM articles"))


def _article(row: tuple, with_text: bool) -> Article:
    values = list(row)
    if not with_text:
        values.insert(2, "")
    (aid, title, text, url, authors, published, source, section, origin, chash, captions, ingested) = values
    return Article(
        id=aid,
        title=title,
        text=text,
        url=url,
        authors=json.loads(authors),
        published=date.fromisoformat(published) if published else None,
        source=source,
        section=section,
        origin=origin,
        content_hash=chash,
        captions=[tuple(c) for c in json.loads(captions)],
        ingested_at=datetime.fromisoformat(ingested),
    )


def iter_articles(conn: sqlite3.Connection, with_text: bool = False) -> Iterator[Article]:
    columns = _ARTICLE_COLUMNS if with_text else _META_COLUMNS
    for row in conn.execute(f"SELECT {columns} FROM articles ORDER BY id"):
        yield _article(row, with_text)


def get_article(conn: sqlite3.Connection, article_id: str) -> Article | None:
    row = conn.execute(f"SELECT {_ARTICLE_COLUMNS} FROM articles WHERE id = ?", (article_id,)).fetchone()
    return _article(row, True) if row else None


def iter_chunks(conn: sqlite3.Connection) -> Iterator[Chunk]:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}
    headings_column = "headings" if "headings" in columns else "'[]'"  # indexes of chunker version 1 have none
    query = f'SELECT id, article_id, ordinal, start, "end", text, sentences, n_tokens, {headings_column} FROM chunks'
    for cid, aid, ordinal, start, end, text, sentences, n_tokens, headings in conn.execute(query + " ORDER BY id"):
        yield Chunk(
            id=cid,
            article_id=aid,
            ordinal=ordinal,
            start=start,
            end=end,
            text=text,
            sentences=[tuple(s) for s in json.loads(sentences)],
            n_tokens=n_tokens,
            headings=[tuple(s) for s in json.loads(headings)],
        )


def check(conn: sqlite3.Connection, path: Path) -> None:
    from index.manifest import IndexError_

    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise IndexError_(f"index file corrupt: {path}: {exc}") from exc
    if result != "ok":
        raise IndexError_(f"index file corrupt: {path}: {result}")
