"""Optional rerank stages over fused candidates (``settings.rerank``).

``sentence``: the best-matching sentence decides. Each candidate passage is scored by the highest cosine
between the question and any of its sentences (embedded with the same encoder, cached per index version),
mixed with its fused rank. A cross-encoder, where one is installed, would plug in here the same way.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from index.encoder import Encoder
from index.reader import LoadedIndex
from index.settings import Settings
from service.retrieval import Candidate


class SentenceReranker:
    def __init__(self, encoder: Encoder, weight: float = 0.5, capacity: int = 200_000) -> None:
        self.encoder = encoder
        self.weight = weight
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()

    def _sentence_vectors(self, index: LoadedIndex, chunk_ids: list[int]) -> dict[int, np.ndarray]:
        wanted: list[tuple[str, int, int]] = []
        texts: list[str] = []
        for cid in chunk_ids:
            chunk = index.chunks[cid]
            for start, end in chunk.sentences:
                key = (index.version, chunk.id, start)
                if key not in self._cache and key not in wanted:
                    wanted.append(key)
                    texts.append(chunk.text[start - chunk.start : end - chunk.start])
        if texts:
            for key, vector in zip(wanted, self.encoder.embed(texts, batch_size=64), strict=True):
                self._cache[key] = vector
        out = {}
        for cid in chunk_ids:
            chunk = index.chunks[cid]
            keys = [(index.version, chunk.id, start) for start, _ in chunk.sentences]
            out[cid] = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, self.encoder.info.dimension))
            for key in keys:
                self._cache.move_to_end(key)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return out

    def rerank(
        self, query: str, candidates: list[Candidate], index: LoadedIndex, query_vector: np.ndarray
    ) -> list[Candidate]:
        if not candidates:
            return candidates
        vectors = self._sentence_vectors(index, [c.chunk_id for c in candidates])
        top = max(c.score for c in candidates)
        for cand in candidates:
            sims = vectors[cand.chunk_id] @ query_vector
            best = float(sims.max()) if len(sims) else 0.0
            cand.extra["best_sentence"] = best
            cand.score = (1 - self.weight) * (cand.score / top) + self.weight * best
        return sorted(candidates, key=lambda c: -c.score)


def make_reranker(settings: Settings, encoder: Encoder) -> SentenceReranker | None:
    if settings.rerank == "none":
        return None
    if settings.rerank == "sentence":
        return SentenceReranker(encoder, weight=settings.rerank_weight)
    raise ValueError(f"unknown rerank stage {settings.rerank!r} (none | sentence)")
