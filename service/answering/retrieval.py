"""Hybrid retrieval: dense (FAISS) and BM25 candidates fused with weighted reciprocal rank fusion.

Filters (source, author, date range, ``as_of``) restrict both searches before ranking. After fusion an
optional rerank stage reorders the candidates (``settings.rerank``; a cross-encoder can be plugged in
through the :class:`Reranker` protocol), then a per-article cap keeps the final list diverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import numpy as np

from index import vectors
from index.reader import LoadedIndex
from index.settings import Settings


@dataclass
class Candidate:
    chunk_id: int
    article_id: str
    score: float = 0.0
    dense_score: float | None = None
    bm25_score: float | None = None
    dense_rank: int | None = None
    bm25_rank: int | None = None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalFilters:
    sources: list[str] | None = None
    authors: list[str] | None = None
    date_from: date | None = None
    date_to: date | None = None
    article_ids: list[str] | None = None


@dataclass(frozen=True)
class Preferences:
    """What the question suggests (a publication, a period): a ranking bonus, never a filter."""

    sources: frozenset[str] = frozenset()
    date_from: date | None = None
    date_to: date | None = None
    recency: bool = False
    articles: frozenset[str] = frozenset()  # articles cited earlier in the conversation


class Reranker(Protocol):
    """Reorders fused candidates for a query; returns them best first."""

    def rerank(
        self, query: str, candidates: list[Candidate], index: LoadedIndex, query_vector: np.ndarray
    ) -> list[Candidate]: ...


def fuse(
    dense: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    rrf_k: int,
    dense_weight: float = 1.0,
    bm25_weight: float = 1.0,
) -> dict[int, Candidate]:
    """Weighted reciprocal rank fusion: ``sum_w w / (rrf_k + rank)`` with ranks starting at 1."""
    fused: dict[int, Candidate] = {}
    for rank, (cid, score) in enumerate(zip(*dense, strict=True), start=1):
        cand = fused.setdefault(int(cid), Candidate(int(cid), ""))
        cand.dense_score, cand.dense_rank = float(score), rank
        cand.score += dense_weight / (rrf_k + rank)
    for rank, (cid, score) in enumerate(zip(*lexical, strict=True), start=1):
        cand = fused.setdefault(int(cid), Candidate(int(cid), ""))
        cand.bm25_score, cand.bm25_rank = float(score), rank
        cand.score += bm25_weight / (rrf_k + rank)
    return fused


def diversify(candidates: list[Candidate], k: int, per_article: int) -> list[Candidate]:
    """The best ``k`` candidates with at most ``per_article`` from any one article (backfilled if short)."""
    chosen: list[Candidate] = []
    overflow: list[Candidate] = []
    counts: dict[str, int] = {}
    for cand in candidates:
        if counts.get(cand.article_id, 0) < per_article:
            chosen.append(cand)
            counts[cand.article_id] = counts.get(cand.article_id, 0) + 1
        else:
            overflow.append(cand)
        if len(chosen) == k:
            return chosen
    single_article = len(counts) == 1
    if single_article:  # the question is about one article: let it fill the list
        chosen.extend(overflow[: k - len(chosen)])
        chosen.sort(key=lambda c: -c.score)
    return chosen


class Retriever:
    def __init__(self, settings: Settings, reranker: Reranker | None = None) -> None:
        self.settings = settings
        self.reranker = reranker

    def retrieve(
        self,
        index: LoadedIndex,
        query: str,
        query_vector: np.ndarray,
        k: int,
        filters: RetrievalFilters,
        as_of: date | None,
        preferences: Preferences | None = None,
    ) -> list[Candidate]:
        s = self.settings
        allowed = index.allowed(
            sources=filters.sources,
            authors=filters.authors,
            date_from=filters.date_from,
            date_to=filters.date_to,
            article_ids=filters.article_ids,
            as_of=as_of,
        )
        dense = vectors.search(
            index.vectors,
            query_vector,
            s.dense_k,
            None if allowed is None else allowed.ids,
            ef_search=s.hnsw_ef_search,
            selector=None if allowed is None else allowed.selector,
        )
        lexical = index.bm25.search(query, s.bm25_k, None if allowed is None else allowed.bm25_mask)
        fused = fuse(dense, lexical, s.rrf_k, s.dense_weight, s.bm25_weight)
        prefs = preferences or Preferences()
        bonus = 1.0 / (s.rrf_k + 1)  # one first place in one list
        for cand in fused.values():
            chunk = index.chunks[cand.chunk_id]
            article = index.articles[chunk.article_id]
            cand.article_id = chunk.article_id
            if chunk.article_id in prefs.articles:
                cand.score += s.conversation_bonus * bonus
            if prefs.sources and (article.source or "") in prefs.sources:
                cand.score += s.preference_bonus * bonus
            published = article.published
            if published is not None and (prefs.date_from or prefs.date_to):
                after = prefs.date_from is None or published >= prefs.date_from
                before = prefs.date_to is None or published <= prefs.date_to
                if after and before:
                    cand.score += s.preference_bonus * bonus
            if as_of is not None and s.recency_weight > 0:
                # An undated article is treated as one half-life old: neither favoured nor buried.
                age = max(0, (as_of - published).days) if published else s.recency_half_life_days
                weight = s.recency_weight * (2.0 if prefs.recency else 1.0)
                cand.score += weight * bonus * 0.5 ** (age / s.recency_half_life_days)
        ranked = sorted(fused.values(), key=lambda c: -c.score)
        if self.reranker is not None:
            head = self.reranker.rerank(query, ranked[: s.rerank_depth], index, query_vector)
            ranked = head + ranked[s.rerank_depth :]
        single = bool(filters.article_ids and len(filters.article_ids) == 1)
        per_article = k if single else s.max_passages_per_article
        return diversify(ranked, k, per_article)
