"""Open a published index version for reading: verified, complete, and held in memory."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from pathlib import Path

import numpy as np

from index import bm25, vectors
from index.manifest import IndexError_, Manifest, read_manifest, verify_files
from index.metadata import METADATA, check, connect, get_article, iter_articles, iter_chunks
from index.models import Article, Chunk
from index.publish import current_dir

VECTORS = "vectors.faiss"
VECTOR_DATA = "vectors.npy"
VECTOR_IDS = "vector_ids.npy"
BM25_DIR = "bm25"


class LoadedIndex:
    """One immutable index version: FAISS, BM25, chunks and article metadata in memory."""

    def __init__(self, directory: Path, verify: bool = True) -> None:
        self.directory = directory
        self.manifest: Manifest = read_manifest(directory)
        if verify:
            verify_files(directory, self.manifest)
        self.version = self.manifest.version
        try:
            self.vectors = vectors.load(directory / VECTORS)
        except RuntimeError as exc:
            raise IndexError_(f"index file corrupt: {directory / VECTORS}: {exc}") from exc
        try:
            self.bm25 = bm25.BM25Index(directory / BM25_DIR)
        except (OSError, ValueError, KeyError) as exc:
            raise IndexError_(f"index file corrupt: {directory / BM25_DIR}: {exc}") from exc
        db_path = directory / METADATA
        self._conn = connect(db_path, readonly=True)
        self._lock = threading.Lock()
        try:
            check(self._conn, db_path)
            self.articles: dict[str, Article] = {a.id: a for a in iter_articles(self._conn)}
            self.chunks: dict[int, Chunk] = {c.id: c for c in iter_chunks(self._conn)}
        except sqlite3.DatabaseError as exc:
            raise IndexError_(f"index file corrupt: {db_path}: {exc}") from exc
        self.chunk_ids = np.fromiter(self.chunks.keys(), dtype=np.int64, count=len(self.chunks))
        self._article_chunks: dict[str, list[int]] = {}
        for chunk in self.chunks.values():
            self._article_chunks.setdefault(chunk.article_id, []).append(chunk.id)
        dates = [a.published for a in self.articles.values() if a.published]
        self.latest_published: date | None = max(dates) if dates else None
        self._check_consistency()

    def _check_consistency(self) -> None:
        if self.vectors.ntotal != len(self.chunks):
            raise IndexError_(
                f"index version {self.directory} is inconsistent: {self.vectors.ntotal} vectors for "
                f"{len(self.chunks)} chunks"
            )
        if self.bm25.size != len(self.chunks):
            raise IndexError_(
                f"index version {self.directory} is inconsistent: BM25 has {self.bm25.size} documents for "
                f"{len(self.chunks)} chunks"
            )

    # --- lookups ---
    def article_text(self, article_id: str) -> str | None:
        article = self.article_with_text(article_id)
        return article.text if article else None

    def article_with_text(self, article_id: str) -> Article | None:
        if article_id not in self.articles:
            return None
        with self._lock:
            return get_article(self._conn, article_id)

    def chunks_of(self, article_id: str) -> list[Chunk]:
        return [self.chunks[c] for c in self._article_chunks.get(article_id, [])]

    def allowed_chunks(
        self,
        sources: list[str] | None = None,
        authors: list[str] | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        article_ids: list[str] | None = None,
        as_of: date | None = None,
    ) -> np.ndarray | None:
        """Chunk ids passing the filters, or None when nothing is filtered out.

        ``as_of`` drops articles published after it (undated articles pass: nothing says they are later);
        an explicit date range drops undated articles.
        """
        if as_of is not None and (self.latest_published is None or as_of >= self.latest_published):
            as_of = None  # nothing in the index is newer: no restriction
        if not (sources or authors or date_from or date_to or article_ids or as_of):
            return None
        wanted_sources = {s.lower().removeprefix("www.") for s in sources or []}
        wanted_authors = [a.lower() for a in authors or []]
        wanted_ids = set(article_ids or [])
        keep: list[int] = []
        for article in self.articles.values():
            if wanted_ids and article.id not in wanted_ids:
                continue
            if wanted_sources and (article.source or "").lower().removeprefix("www.") not in wanted_sources:
                continue
            if wanted_authors and not any(w in a.lower() for a in article.authors for w in wanted_authors):
                continue
            if as_of and article.published and article.published > as_of:
                continue  # published after the moment of the question: never used
            if (date_from or date_to) and article.published is None:
                continue
            if date_from and article.published and article.published < date_from:
                continue
            if date_to and article.published and article.published > date_to:
                continue
            keep.extend(self._article_chunks.get(article.id, []))
        return np.array(sorted(keep), dtype=np.int64)

    def bm25_mask(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        return np.isin(self.bm25.chunk_ids, allowed)

    def close(self) -> None:
        self._conn.close()


def load_index(root: Path, verify: bool = True) -> LoadedIndex:
    """Load the version ``CURRENT`` names under ``root``."""
    return LoadedIndex(current_dir(root), verify=verify)
