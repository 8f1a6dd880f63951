"""One vector per chunk sentence, computed at ingest from the chunk pass and stored beside the chunk vectors.

``sentence_vectors.npy`` holds float16 rows (about 0.8 kB a sentence at 384 dimensions), memory-mapped at
load; ``sentence_rows.npy`` holds, for the chunks in ``vector_ids.npy`` order, the offsets of their rows
(``rows[i]:rows[i + 1]`` are the sentences of chunk ``ids[i]``, in ``Chunk.sentences`` order). An index built
by chunker version 1 has neither file; the reader then embeds sentences at query time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SENTENCE_VECTORS = "sentence_vectors.npy"
SENTENCE_ROWS = "sentence_rows.npy"
DTYPE = np.float16


def merge(
    old_rows: np.ndarray,
    old_vectors: np.ndarray,
    keep: np.ndarray,
    new_vectors: list[np.ndarray],
    dimension: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and offsets of a new version: the kept old chunks' rows (in their old order), then the new ones."""
    starts, ends = old_rows[:-1][keep], old_rows[1:][keep]
    kept_rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)] or [np.zeros(0, int)])
    parts = [np.asarray(old_vectors[kept_rows], dtype=DTYPE).reshape(-1, dimension)]
    parts += [np.asarray(v, dtype=DTYPE).reshape(-1, dimension) for v in new_vectors]
    counts = np.concatenate([ends - starts, np.array([len(v) for v in new_vectors], dtype=np.int64)])
    rows = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return np.concatenate(parts), rows


def save(directory: Path, vectors: np.ndarray, rows: np.ndarray) -> None:
    np.save(directory / SENTENCE_VECTORS, np.ascontiguousarray(vectors, dtype=DTYPE))
    np.save(directory / SENTENCE_ROWS, rows.astype(np.int64))


def load_previous(directory: Path, n_chunks: int, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows and offsets of an earlier version (empty for a version without sentence vectors)."""
    if not (directory / SENTENCE_ROWS).exists():
        return np.zeros(n_chunks + 1, dtype=np.int64), np.zeros((0, dimension), dtype=DTYPE)
    return np.load(directory / SENTENCE_ROWS), np.load(directory / SENTENCE_VECTORS, mmap_mode="r")


class SentenceVectors:
    """Read side: the stored vectors of one chunk's sentences, as float32 rows."""

    def __init__(self, directory: Path, chunk_ids: np.ndarray) -> None:
        self.vectors = np.load(directory / SENTENCE_VECTORS, mmap_mode="r")
        rows = np.load(directory / SENTENCE_ROWS)
        if len(rows) != len(chunk_ids) + 1 or rows[-1] != len(self.vectors):
            raise ValueError(f"{SENTENCE_ROWS} does not match {len(chunk_ids)} chunks and {len(self.vectors)} rows")
        self._span = {int(cid): (int(rows[i]), int(rows[i + 1])) for i, cid in enumerate(chunk_ids)}

    def of_chunk(self, chunk_id: int) -> np.ndarray:
        start, end = self._span[chunk_id]
        return np.asarray(self.vectors[start:end], dtype=np.float32)

    @staticmethod
    def present(directory: Path) -> bool:
        return (directory / SENTENCE_VECTORS).exists() and (directory / SENTENCE_ROWS).exists()
