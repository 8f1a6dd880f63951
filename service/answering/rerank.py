"""Optional rerank stages over fused candidates (``settings.rerank``).

``sentence``: the best-matching sentence decides. Each candidate passage is scored by the highest cosine
between the question and any of its sentences (embedded with the same encoder, cached per index version),
mixed with its fused rank. A cross-encoder, where one is installed, would plug in here the same way.
"""

from __future__ import annotations

import numpy as np

from index.reader import LoadedIndex
from index.settings import Settings
from service.answering.retrieval import Candidate
from service.answering.sentence_cache import SentenceEmbeddingCache


class SentenceReranker:
    def __init__(self, cache: SentenceEmbeddingCache, weight: float = 0.5) -> None:
        self.cache = cache
        self.weight = weight

    def rerank(
        self, query: str, candidates: list[Candidate], index: LoadedIndex, query_vector: np.ndarray
    ) -> list[Candidate]:
        if not candidates:
            return candidates
        refs = []
        owners = []
        for position, cand in enumerate(candidates):
            chunk = index.chunks[cand.chunk_id]
            for start, end in chunk.sentences:
                refs.append((chunk.article_id, start, end, chunk.text[start - chunk.start : end - chunk.start]))
                owners.append(position)
        sims = self.cache.embed(index.version, refs) @ query_vector
        best = np.zeros(len(candidates), dtype=np.float32)
        np.maximum.at(best, np.array(owners, dtype=np.int64), sims)
        top = max(c.score for c in candidates)
        for cand, sentence_score in zip(candidates, best, strict=True):
            cand.extra["best_sentence"] = float(sentence_score)
            cand.score = (1 - self.weight) * (cand.score / top) + self.weight * float(sentence_score)
        return sorted(candidates, key=lambda c: -c.score)


def make_reranker(settings: Settings, cache: SentenceEmbeddingCache) -> SentenceReranker | None:
    if settings.rerank == "none":
        return None
    if settings.rerank == "sentence":
        return SentenceReranker(cache, weight=settings.rerank_weight)
    raise ValueError(f"unknown rerank stage {settings.rerank!r} (none | sentence)")
