"""Open a published index version for reading: verified, complete, and held in memory."""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np

from index import bm25, vectors
from index.manifest import IndexError_, Manifest, read_manifest, verify_files
from index.metadata import METADATA, check, connect, get_article, iter_articles, iter_chunks
from index.models import Article, Chunk
from index.publish import current_dir
from index.sentence_vectors import SentenceVectors

VECTORS = "vectors.faiss"
VECTOR_DATA = "vectors.npy"
VECTOR_IDS = "vector_ids.npy"
BM25_DIR = "bm25"


FILTER_CACHE_SIZE = 64


@dataclass(eq=False)
class AllowedChunks:
    """The chunks one filter lets through, in the form each store wants; built once per filter and cached.

    ``ids`` are sorted and read-only; ``bm25_mask`` is a bool per BM25 position; ``selector`` a FAISS id selector.
    """

    ids: np.ndarray
    bm25_positions: np.ndarray = field(repr=False)

    @cached_property
    def bm25_mask(self) -> np.ndarray:
        mask = np.isin(self.bm25_positions, self.ids)
        mask.flags.writeable = False
        return mask

    @cached_property
    def selector(self) -> faiss.IDSelector:
        return faiss.IDSelectorBatch(self.ids)


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
        self._filters: OrderedDict[tuple, AllowedChunks] = OrderedDict()
        self._filters_lock = threading.Lock()
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
        self.sentence_vectors: SentenceVectors | None = None  # chunker version 1 stored none
        if SentenceVectors.present(directory):
            try:
                self.sentence_vectors = SentenceVectors(directory, np.load(directory / VECTOR_IDS))
            except (OSError, ValueError) as exc:
                raise IndexError_(f"index file corrupt: {directory / 'sentence_vectors.npy'}: {exc}") from exc

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

    def allowed(
        self,
        sources: list[str] | None = None,
        authors: list[str] | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        article_ids: list[str] | None = None,
        as_of: date | None = None,
    ) -> AllowedChunks | None:
        """The chunks passing the filters, or None when nothing is filtered out.

        ``as_of`` drops articles published after it (undated articles pass: nothing says they are later);
        an explicit date range drops undated articles. Results are cached per filter (the index never changes).
        """
        if as_of is not None and (self.latest_published is None or as_of >= self.latest_published):
            as_of = None  # nothing in the index is newer: no restriction
        if not (sources or authors or date_from or date_to or article_ids or as_of):
            return None
        key = (
            tuple(sorted(sources or [])),
            tuple(sorted(authors or [])),
            date_from,
            date_to,
            tuple(sorted(article_ids or [])),
            as_of,
        )
        with self._filters_lock:
            if key in self._filters:
                self._filters.move_to_end(key)
                return self._filters[key]
        ids = self._filter_ids(sources, authors, date_from, date_to, article_ids, as_of)
        ids.flags.writeable = False
        result = AllowedChunks(ids, self.bm25.chunk_ids)
        with self._filters_lock:
            self._filters[key] = result
            while len(self._filters) > FILTER_CACHE_SIZE:
                self._filters.popitem(last=False)
        return result

    def _filter_ids(
        self,
        sources: list[str] | None,
        authors: list[str] | None,
        date_from: date | None,
        date_to: date | None,
        article_ids: list[str] | None,
        as_of: date | None,
    ) -> np.ndarray:
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

    def close(self) -> None:
        self._conn.close()


def load_index(root: Path, verify: bool = True) -> LoadedIndex:
    """Load the version ``CURRENT`` names under ``root``."""
    return LoadedIndex(current_dir(root), verify=verify)
