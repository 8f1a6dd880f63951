"""The BM25 index (bm25s with the Snowball English stemmer), built at ingest and loaded by the service.

bm25s numbers documents 0..N-1; ``chunk_ids.npy`` maps those positions to chunk ids.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

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
