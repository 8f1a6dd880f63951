"""``byline ingest --engine ray``: the stages of ``ingest/job.py``, with cleaning, chunking and embedding on Ray Data.

The driver reads the files (the paths are the driver's), classifies the cleaned articles against the published
version, numbers the chunks, and writes and publishes the index under the index lock, all through the very
functions the local engine calls. Ray Data runs the per-article work and the encoder:

- clean: ``map_batches`` over the raw articles, in stateless tasks;
- chunk: ``map_batches`` over the changed articles, in an actor pool (the chunker counts word pieces with the
  encoder's tokenizer, so each actor loads the encoder once);
- embed: ``map_batches`` over the local engine's own encoder blocks (``EmbedInput.blocks``), one block per call, in
  a pool of ``ray_embed_actors`` actors with the same encoder class, backend and batch size. The block is the unit
  because the encoder sorts a block by length before cutting it into batches: the same blocks give the same
  batches, hence the same int8 vectors, chunk and sentence alike.

Every row carries its position and the driver puts results back in input order, so nothing depends on the order
in which Ray returns them. Ray is imported only here, and only when this engine runs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from index.encoder import Encoder
from index.lock import index_lock
from index.manifest import EmbeddingInfo
from index.models import Article, RawArticle
from index.settings import Settings, get_settings
from ingest.chunker import DraftChunk
from ingest.job import (
    Cleaned,
    IngestError,
    IngestSummary,
    chunker_config,
    chunking_info,
    classify,
    clean_item,
    draft_chunks,
    embed_block,
    embedded,
    keep_published,
    number_chunks,
    open_prior,
    write_and_publish,
)
from ingest.readers import Skipped, iter_articles, printable

RAY_MISSING = "the ray engine needs Ray, which is not installed: pip install -e '.[ray]'"
CLEAN_BATCH = 32  # raw articles per cleaning task
CHUNK_BATCH = 16  # articles per chunking call
_WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


class RayUnavailable(IngestError):
    pass


@dataclass
class RayStats:
    """Where a Ray ingest's time went (filled when passed to ``run_ingest_ray``; bench/ray_ingest.py prints it)."""

    ray_start_s: float = 0.0
    read_s: float = 0.0
    clean_s: float = 0.0
    chunk_s: float = 0.0
    embed_s: float = 0.0
    write_s: float = 0.0
    blocks: int = 0
    actor_load_s: list[float] = field(default_factory=list)  # encoder load, per embedding actor
    actor_busy_s: dict[int, float] = field(default_factory=dict)  # seconds inside the encoder, per actor pid
    actor_chunks: dict[int, int] = field(default_factory=dict)  # chunks embedded, per actor pid


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayUnavailable(RAY_MISSING) from exc
    return ray


def start_ray(address: str | None = None) -> bool:
    """Joins ``address`` (or ``RAY_ADDRESS``), else starts a local Ray; True when this call started it."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = {"runtime_env": {"env_vars": _WORKER_ENV}, "logging_level": logging.WARNING}
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, **options)
        else:  # "local": a new instance, even if a cluster started with `ray start` runs on this machine
            ray.init(address="local", include_dashboard=False, **options)
    except ConnectionError as exc:
        raise IngestError(f"could not join the Ray cluster at {address}: {exc}; nothing was written") from exc
    return True


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail at once if nothing listens at a ``host:port`` address (Ray itself would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://..., and the like: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise IngestError(f"no Ray cluster answers at {address} ({exc}); nothing was written") from exc


def _data_context(progress: bool) -> None:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _actor_threads(settings: Settings) -> int:
    """Encoder threads per actor: its CPU share, so N actors on a node do not oversubscribe its cores."""
    return settings.encoder_threads or max(1, int(settings.ray_cpus_per_actor))


def _encoder(settings: Settings, threads: int | None = None) -> Encoder:
    threads = _actor_threads(settings) if threads is None else threads
    return Encoder(backend=settings.embedding_backend, threads=threads, cache_dir=settings.cache_dir)


def _bind(cls: type, settings: Settings) -> type:
    """``cls`` with ``settings`` as a class attribute: shipped with the class, not as an object-store argument."""
    return type(cls.__name__, (cls,), {"settings": settings})


def _pool(settings: Settings, rows: int) -> Any:
    """A fixed pool, one call in flight per actor (else the first actor up takes every block)."""
    import ray.data

    size = max(1, min(settings.ray_embed_actors, rows))
    return ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)


# ----------------------------------------------------------------------------------------------- on the workers


def _clean_batch(batch: dict[str, np.ndarray], now: str) -> dict[str, np.ndarray]:
    stamp = datetime.fromisoformat(now)
    out = []
    for payload in batch["raw"]:
        item = clean_item(RawArticle.model_validate_json(payload), stamp)
        if isinstance(item, Skipped):
            out.append(json.dumps({"skipped": [item.origin, item.reason]}))
        else:
            out.append(json.dumps({"article": item.article.model_dump_json(), "former": item.former_id}))
    return {"seq": batch["seq"], "item": np.array(out, dtype=object)}


class _ChunkActor:
    settings: Settings

    def __init__(self) -> None:
        self.encoder = _encoder(self.settings)
        self.config = chunker_config(self.settings, self.encoder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for payload in batch["article"]:
            drafts = draft_chunks(Article.model_validate_json(payload), self.config, self.encoder)
            out.append(json.dumps([asdict(draft) for draft in drafts]))
        return {"seq": batch["seq"], "drafts": np.array(out, dtype=object)}


class _EmbedActor:
    settings: Settings

    def __init__(self) -> None:
        started = time.perf_counter()
        self.encoder = _encoder(self.settings)
        self.load_s = time.perf_counter() - started
        self.reported = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        columns: dict[str, list[Any]] = {k: [] for k in ("vectors", "sentences", "counts", "n", "busy_s", "load_s")}
        for payload in batch["block"]:
            texts, spans = json.loads(payload)
            started = time.perf_counter()
            vectors, per_sentence = embed_block(
                self.encoder, texts, [[tuple(s) for s in row] for row in spans], self.settings
            )
            columns["busy_s"].append(time.perf_counter() - started)
            columns["vectors"].append(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
            flat = np.concatenate(per_sentence) if per_sentence else np.zeros((0, vectors.shape[1]), np.float32)
            columns["sentences"].append(np.ascontiguousarray(flat, dtype=np.float32).tobytes())
            columns["counts"].append(json.dumps([len(rows) for rows in per_sentence]))
            columns["n"].append(len(texts))
            columns["load_s"].append(0.0 if self.reported else self.load_s)
            self.reported = True
        out = {key: np.array(values, dtype=object) for key, values in columns.items()}
        out["index"] = batch["index"]
        out["pid"] = np.full(len(columns["n"]), os.getpid())
        return out


# ----------------------------------------------------------------------------------------------- on the driver


def _rows(dataset: Any) -> Iterator[dict[str, Any]]:
    yield from dataset.iter_rows()


def _draft(data: dict[str, Any]) -> DraftChunk:
    spans = {key: tuple(tuple(span) for span in data[key]) for key in ("sentences", "headings")}
    return DraftChunk(**{**data, "sentences": list(spans["sentences"]), "headings": spans["headings"]})


def _clean_on_ray(items: list[RawArticle | Skipped], now: datetime) -> list[Cleaned | Skipped]:
    import ray.data

    out: list[Cleaned | Skipped | None] = [item if isinstance(item, Skipped) else None for item in items]
    raw = [{"seq": i, "raw": item.model_dump_json()} for i, item in enumerate(items) if isinstance(item, RawArticle)]
    if raw:
        dataset = ray.data.from_items(raw).map_batches(
            _clean_batch, fn_kwargs={"now": now.isoformat()}, batch_size=CLEAN_BATCH, batch_format="numpy"
        )
        for row in _rows(dataset):
            item = json.loads(row["item"])
            if "skipped" in item:
                out[int(row["seq"])] = Skipped(*item["skipped"])
            else:
                out[int(row["seq"])] = Cleaned(Article.model_validate_json(item["article"]), item["former"])
    assert all(item is not None for item in out)
    return out  # type: ignore[return-value]


def _chunk_on_ray(articles: list[Article], settings: Settings) -> list[list[DraftChunk]]:
    import ray.data

    if not articles:
        return []
    out: list[list[DraftChunk] | None] = [None] * len(articles)
    rows = [{"seq": i, "article": article.model_dump_json()} for i, article in enumerate(articles)]
    dataset = ray.data.from_items(rows).map_batches(
        _bind(_ChunkActor, settings),
        batch_size=CHUNK_BATCH,
        batch_format="numpy",
        compute=_pool(settings, len(articles)),
        num_cpus=settings.ray_cpus_per_actor,
    )
    for row in _rows(dataset):
        out[int(row["seq"])] = [_draft(data) for data in json.loads(row["drafts"])]
    assert all(drafts is not None for drafts in out)
    return out  # type: ignore[return-value]


def _embed_on_ray(
    blocks: list[tuple[list[str], list[list[tuple[int, int]]]]], settings: Settings, dimension: int, stats: RayStats
) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    import ray.data

    stats.blocks = len(blocks)
    if not blocks:
        return []
    out: list[tuple[np.ndarray, list[np.ndarray]] | None] = [None] * len(blocks)
    rows = [{"index": i, "block": json.dumps(block)} for i, block in enumerate(blocks)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(blocks)).map_batches(
        _bind(_EmbedActor, settings),
        batch_size=1,  # one encoder block per call: the block, not Ray's batching, decides the encoder's batches
        batch_format="numpy",
        compute=_pool(settings, len(blocks)),
        num_cpus=settings.ray_cpus_per_actor,
    )
    for row in _rows(dataset):
        n, pid = int(row["n"]), int(row["pid"])
        vectors = np.frombuffer(row["vectors"], dtype=np.float32).reshape(n, dimension)
        flat = np.frombuffer(row["sentences"], dtype=np.float32).reshape(-1, dimension)
        bounds = np.cumsum([0, *json.loads(row["counts"])])
        out[int(row["index"])] = (vectors, [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        stats.actor_busy_s[pid] = stats.actor_busy_s.get(pid, 0.0) + float(row["busy_s"])
        stats.actor_chunks[pid] = stats.actor_chunks.get(pid, 0) + n
        if row["load_s"]:
            stats.actor_load_s.append(float(row["load_s"]))
    assert all(result is not None for result in out)
    return out  # type: ignore[return-value]


def run_ingest_ray(
    paths: Iterable[Path],
    index_root: Path | None = None,
    prune: bool = False,
    rebuild: bool = False,
    settings: Settings | None = None,
    encoder: Encoder | None = None,
    progress: bool = True,
    wait: bool = False,
    address: str | None = None,
    stats: RayStats | None = None,
) -> IngestSummary:
    """``run_ingest`` with the per-article work and the encoder on Ray: the same index, written by this driver.

    ``address`` (or ``RAY_ADDRESS``) joins a running cluster; without one a local Ray is started (and stopped at
    the end). If Ray is already initialised in this process, that Ray is used. ``encoder`` (default: one built
    from ``settings``) serves the driver only for the encoder's description (the manifest's embedding info and
    the chunker's word-piece limit); the actors build their own.
    """
    _import_ray()
    settings = settings or get_settings()
    root = Path(index_root or settings.index_dir)
    with index_lock(root, wait=wait, notify=lambda message: print(printable(message), file=sys.stderr, flush=True)):
        return _run_locked(list(paths), root, prune, rebuild, settings, encoder, progress, address, stats or RayStats())


def _run_locked(
    paths: list[Path],
    root: Path,
    prune: bool,
    rebuild: bool,
    settings: Settings,
    encoder: Encoder | None,
    progress: bool,
    address: str | None,
    stats: RayStats,
) -> IngestSummary:
    started = time.perf_counter()
    encoder = encoder or _encoder(settings, threads=settings.encoder_threads)
    config = chunker_config(settings, encoder)
    chunking = chunking_info(settings, config)
    embedding = EmbeddingInfo(**encoder.info.__dict__)
    summary = IngestSummary()
    prior = open_prior(root, embedding, chunking, rebuild)
    summary.version = prior.name

    mark = time.perf_counter()
    started_ray = start_ray(address)
    _data_context(progress)
    stats.ray_start_s = time.perf_counter() - mark
    try:
        # 1. read (driver), clean (Ray), classify against the published version (driver)
        mark = time.perf_counter()
        items = list(iter_articles(paths))
        stats.read_s = time.perf_counter() - mark
        mark = time.perf_counter()
        cleaned = _clean_on_ray(items, datetime.now(UTC))
        stats.clean_s = time.perf_counter() - mark
        plan = classify(cleaned, prior, prune, summary, paths)
        if plan.empty and prior.manifest is not None:
            keep_published(prior, summary)
            summary.seconds = time.perf_counter() - started
            return summary

        # 2. chunk (Ray), number (driver), embed (Ray)
        mark = time.perf_counter()
        drafts = _chunk_on_ray(plan.changed, settings)
        stats.chunk_s = time.perf_counter() - mark
        next_id = prior.manifest.next_chunk_id if prior.manifest else 1
        chunks, embed_input = number_chunks(plan.changed, drafts, next_id)
        mark = time.perf_counter()
        results = _embed_on_ray(embed_input.blocks(), settings, embedding.dimension, stats)
        stats.embed_s = summary.embed_seconds = time.perf_counter() - mark
        summary.chunks_embedded = len(chunks)
    finally:
        if started_ray:
            import ray

            ray.shutdown()

    # 3. the single writer: the local engine's index writers and atomic publish
    mark = time.perf_counter()
    write_and_publish(
        prior, plan, embedded(chunks, results, embedding.dimension, next_id), settings, embedding, chunking, summary
    )
    stats.write_s = time.perf_counter() - mark
    summary.seconds = time.perf_counter() - started
    return summary
