"""Embeddings of corpus sentences, shared by answer selection and the sentence rerank stage.

Keyed by index version, article and span, so a sentence is embedded once however many passages or
questions bring it up; a bounded LRU (50,000 x 384 floats is about 75 MB).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from index.encoder import Encoder

SentenceRef = tuple[str, int, int, str]
"""(article id, start, end, text) of one sentence."""


class SentenceEmbeddingCache:
    def __init__(self, encoder: Encoder, capacity: int = 50_000) -> None:
        self.encoder = encoder
        self.capacity = capacity
        self._store: OrderedDict[tuple[str, str, int, int], np.ndarray] = OrderedDict()

    def embed(self, version: str, sentences: list[SentenceRef]) -> np.ndarray:
        """One normalised vector per sentence, in order; only the ones not cached are embedded."""
        keys = [(version, aid, start, end) for aid, start, end, _ in sentences]
        missing: dict[tuple[str, str, int, int], str] = {}
        for key, (_, _, _, text) in zip(keys, sentences, strict=True):
            if key not in self._store:
                missing[key] = text
        if missing:
            vectors = self.encoder.embed(list(missing.values()), batch_size=64)
            self._store.update(zip(missing, vectors, strict=True))
        if not keys:
            return np.zeros((0, self.encoder.info.dimension), dtype=np.float32)
        out = np.stack([self._store[key] for key in keys])
        for key in keys:
            self._store.move_to_end(key)
        while len(self._store) > self.capacity:
            self._store.popitem(last=False)
        return out
