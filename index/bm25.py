"""The BM25 index (bm25s with the Snowball English stemmer), built at ingest and loaded by the service.

bm25s numbers documents 0..N-1; ``chunk_ids.npy`` maps those positions to chunk ids.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np
import Stemmer


def _import_bm25s() -> ModuleType:
    """bm25s, imported without scipy where nothing has imported scipy yet.

    bm25s imports ``scipy.sparse`` when imported, if it can (0.13-0.34 s on these cores, most of what bm25s costs a
    fresh process), and uses it for nothing we run: only ``BM25(csc_backend="scipy")`` builds with it, and the default
    backend, ours, is numpy; loading and scoring are numpy too (``np.load`` of the index's three arrays). So the
    import runs with ``scipy`` marked absent (a ``None`` in ``sys.modules`` makes that import fail, and bm25s then
    sets ``SCIPY_AVAILABLE = False``) and the mark is removed right after: scipy stays importable for anyone else.
    """
    if "bm25s" in sys.modules or "scipy" in sys.modules:
        import bm25s
    else:
        sys.modules["scipy"] = None  # type: ignore[assignment]
        try:
            import bm25s
        finally:
            if sys.modules.get("scipy", 0) is None:
                del sys.modules["scipy"]
    return bm25s


bm25s = _import_bm25s()
STOPWORDS_EN = importlib.import_module("bm25s.stopwords").STOPWORDS_EN

logging.getLogger("bm25s").setLevel(logging.WARNING)

_STEMMER = Stemmer.Stemmer("english")
CHUNK_IDS = "chunk_ids.npy"
# bm25s's own token pattern and English stopwords: query_tokens must split exactly as the index was built.
_WORDS = re.compile(r"(?u)\b\w\w+\b").findall
_STOPWORDS = frozenset(STOPWORDS_EN)


def tokenize(texts: list[str]) -> bm25s.tokenization.Tokenized:
    return bm25s.tokenize(texts, stopwords="en", stemmer=_STEMMER, show_progress=False)


def query_tokens(text: str) -> list[str]:
    """The stemmed tokens of one text, as :func:`tokenize` makes them (tests compare the two).

    Written out because ``bm25s.tokenize`` builds a vocabulary, a stopword set and progress bars per call: on one
    short query that was a quarter of ``ask`` (bench/profile_paths.py). Tokens are stemmed through a cache.
    """
    return [_stem(word) for word in _WORDS(text.lower()) if word not in _STOPWORDS]


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def build(texts: list[str]) -> bm25s.BM25:
    retriever = bm25s.BM25()
    retriever.index(tokenize(texts), show_progress=False)
    return retriever


def save(retriever: bm25s.BM25, chunk_ids: np.ndarray, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    retriever.save(str(directory), show_progress=False)
    np.save(directory / CHUNK_IDS, chunk_ids.astype(np.int64))


class BM25Index:
    def __init__(self, directory: Path) -> None:
        self.retriever = bm25s.BM25.load(str(directory), load_corpus=False, show_progress=False)
        self.chunk_ids: np.ndarray = np.load(directory / CHUNK_IDS)
        self.vocab: dict[str, int] = self.retriever.vocab_dict
        self.size = len(self.chunk_ids)
        indptr = np.asarray(self.retriever.scores["indptr"])
        df = np.diff(indptr).astype(np.float64)  # documents containing each vocabulary token
        self._idf = np.log(1.0 + (self.size - df + 0.5) / (df + 0.5))
        self._max_idf = float(np.log(1.0 + (self.size + 0.5) / 0.5))

    def idf(self, token: str) -> float:
        """Inverse document frequency of a (stemmed) token; unseen tokens get the maximum."""
        position = self.vocab.get(token)
        return float(self._idf[position]) if position is not None and position < len(self._idf) else self._max_idf

    def search(self, text: str, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (chunk ids, scores) for a query; ``mask`` (bool per position) restricts documents."""
        tokens = [t for t in query_tokens(text) if t in self.vocab]
        if not tokens or self.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = self.retriever.get_scores(tokens)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        top = top[scores[top] > 0]
        return self.chunk_ids[top], scores[top].astype(np.float32)
