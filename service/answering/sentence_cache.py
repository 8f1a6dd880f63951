"""Embeddings of corpus sentences, shared by answer selection and the sentence rerank stage.

A sentence's vector depends on its text alone (each one is embedded by itself), so the cache is keyed by the
sentence text: a sentence is embedded once however many passages, questions or index versions bring it up, and the
cache survives a hot reload for every article that did not change (a changed article's changed sentences simply
miss). A bounded LRU (50,000 x 384 floats is about 75 MB, plus the texts).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from index.encoder import Encoder

SentenceRef = tuple[str, int, int, str]
"""(article id, start, end, text) of one sentence."""


class SentenceEmbeddingCache:
    def __init__(self, encoder: Encoder, capacity: int = 50_000) -> None:
        self.encoder = encoder
        self.capacity = capacity
        self._store: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # requests run in a thread pool, the reload warm-up in another

    def __len__(self) -> int:
        return len(self._store)

    def embed(self, version: str, sentences: list[SentenceRef]) -> np.ndarray:
        """One normalised vector per sentence, in order; only texts not cached are embedded.

        ``version`` (the index version asking) is not part of the key: the same text has the same vector in
        every version.
        """
        if not sentences:
            return np.zeros((0, self.encoder.info.dimension), dtype=np.float32)
        texts = [text for _, _, _, text in sentences]
        with self._lock:  # the encoder runs one call at a time anyway
            missing = [text for text in dict.fromkeys(texts) if text not in self._store]
            if missing:
                self._store.update(zip(missing, self.encoder.embed(missing, batch_size=64), strict=True))
            out = np.stack([self._store[text] for text in texts])
            for text in texts:
                self._store.move_to_end(text)
            while len(self._store) > self.capacity:
                self._store.popitem(last=False)
        return out
