"""FAISS over normalised vectors (inner product = cosine) with stable integer ids.

Exact search (``IndexFlatIP``) up to ``ann_threshold`` vectors, HNSW past it; the choice and its reason
are recorded in the manifest. Filters are applied inside the search with an id selector, so a filtered
query ranks only the allowed chunks instead of truncating an unfiltered list.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from index.manifest import VectorInfo

# Serve single queries on one thread: on two cores, OpenMP threads only add noise (MODELS.md).
faiss.omp_set_num_threads(1)

EXACT_FILTERED_MAX = 50_000


def choose_kind(n: int, ann_threshold: int) -> VectorInfo:
    if n <= ann_threshold:
        return VectorInfo(kind="flat", reason=f"{n} vectors <= ann_threshold {ann_threshold}: exact search")
    return VectorInfo(kind="hnsw", reason=f"{n} vectors > ann_threshold {ann_threshold}: approximate (HNSW)")


def build(
    vectors: np.ndarray, ids: np.ndarray, info: VectorInfo, m: int = 32, ef_construction: int = 80
) -> faiss.Index:
    dim = vectors.shape[1]
    if info.kind == "flat":
        inner: faiss.Index = faiss.IndexFlatIP(dim)
    elif info.kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = ef_construction
        info.params.update({"m": m, "ef_construction": ef_construction})
    else:
        raise ValueError(f"unknown vector index kind {info.kind!r}")
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        faiss.omp_set_num_threads(0)  # building uses every core
        try:
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
        finally:
            faiss.omp_set_num_threads(1)
    return index


def save(index: faiss.Index, path: Path) -> None:
    # Write through a Python file so a failed write (disk full, file too large) raises OSError. Given a path,
    # faiss only prints the error when it closes the file and leaves a truncated index that would be published.
    with open(path, "wb") as handle:
        writer = faiss.PyCallbackIOWriter(handle.write)
        try:
            faiss.write_index(index, writer)
        finally:
            del writer


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def search(
    index: faiss.Index,
    query: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
    ef_search: int = 128,
    selector: faiss.IDSelector | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` (ids, scores) for one query vector, restricted to ``allowed`` ids when given.

    ``selector`` is a prebuilt FAISS selector for the same ``allowed`` ids (callers that repeat a filter cache it).
    """
    if index.ntotal == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    k = min(k, index.ntotal if allowed is None else len(allowed))
    query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    inner = faiss.downcast_index(index.index)
    if allowed is not None and isinstance(inner, faiss.IndexHNSW) and len(allowed) <= EXACT_FILTERED_MAX:
        # A selective filter starves HNSW's graph walk; score the few allowed vectors exactly instead.
        allowed = allowed.astype(np.int64)
        scores = index.reconstruct_batch(allowed) @ query[0]
        top = np.argsort(-scores)[:k]
        return allowed[top], scores[top].astype(np.float32)
    params: faiss.SearchParameters | None = None
    if allowed is not None and selector is None:
        selector = faiss.IDSelectorBatch(allowed.astype(np.int64))
    if isinstance(inner, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(ef_search, k))
        if selector is not None:
            params.sel = selector
    elif selector is not None:
        params = faiss.SearchParameters(sel=selector)
    scores, ids = index.search(query, k, params=params)
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]
