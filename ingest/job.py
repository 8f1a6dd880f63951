"""The ingest job: read -> clean -> chunk -> embed -> write a new index version -> publish atomically.

Incremental: an article whose id and content hash are already in the published version is skipped
without embedding; a changed one replaces its chunks; with ``prune`` the articles not seen in this run
are removed; an article with the same content as another one is stored once. Unchanged chunks keep
their ids and vectors.

Each stage is a function (``open_prior``, ``clean_item``, ``classify``, ``draft_chunks``, ``number_chunks``,
``EmbedInput.blocks`` and ``embed_block``, ``embedded``, ``write_and_publish``); ``run_ingest`` runs them in
this process and ``ingest.ray_engine`` runs the per-article ones and the encoder on Ray, so both write the same.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from index import bm25, sentence_vectors, vectors
from index.encoder import Encoder, get_encoder
from index.lock import index_lock
from index.manifest import (
    CHUNKER_VERSION,
    MANIFEST,
    ChunkingInfo,
    EmbeddingInfo,
    Manifest,
    file_info,
    read_manifest,
)
from index.metadata import (
    METADATA,
    article_hashes,
    connect,
    delete_article,
    iter_chunks,
    write_article,
    write_chunks,
)
from index.metadata import iter_articles as iter_stored_articles
from index.models import Article, Chunk, RawArticle, content_hash, legacy_article_id, stable_article_id
from index.publish import current_version, make_staging, new_version_name, publish, version_dir
from index.reader import BM25_DIR, VECTOR_DATA, VECTOR_IDS, VECTORS
from index.settings import Settings, get_settings
from index.tokens import count_tokens
from ingest.chunker import ChunkerConfig, DraftChunk, chunk_header, chunk_text
from ingest.cleaner import clean
from ingest.readers import Skipped, iter_articles, printable

EMBED_BLOCK = 512  # texts per encode call: large enough for length sorting, small enough for progress


class IngestError(RuntimeError):
    pass


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_total: int = 0
    articles_total: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    version: str | None = None
    published: bool = False

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_embedded / self.seconds if self.seconds else 0.0

    def render(self) -> str:
        lines = [
            f"articles: {self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.removed} removed, {len(self.skipped)} skipped",
            f"chunks: {self.chunks_embedded} embedded, {self.chunks_total} in index ({self.articles_total} articles)",
            f"time: {self.seconds:.1f} s ({self.embed_seconds:.1f} s embedding), {self.chunks_per_second:.1f} chunks/s",
        ]
        if self.published:
            lines.append(f"published index version {self.version}")
        else:
            lines.append(f"nothing changed: nothing embedded, index version {self.version} kept")
        for origin, reason in self.skipped[:50]:
            lines.append(f"  skipped {origin}: {reason}")
        if len(self.skipped) > 50:
            lines.append(f"  ... and {len(self.skipped) - 50} more skipped")
        return "\n".join(printable(line) for line in lines)  # one line each: names cannot add lines


def chunker_config(settings: Settings, encoder: Encoder) -> ChunkerConfig:
    return ChunkerConfig(
        target_tokens=settings.chunk_target_tokens,
        max_tokens=settings.chunk_max_tokens,
        overlap_sentences=settings.chunk_overlap_sentences,
        max_wordpieces=encoder.max_wordpieces,
    )


def chunking_info(settings: Settings, config: ChunkerConfig) -> ChunkingInfo:
    return ChunkingInfo(
        version=CHUNKER_VERSION,
        target_tokens=config.target_tokens,
        max_tokens=config.max_tokens,
        overlap_sentences=config.overlap_sentences,
        max_wordpieces=config.max_wordpieces,
        tokenizer=settings.tokenizer_encoding,
    )


def to_article(raw: RawArticle, now: datetime) -> Article | None:
    cleaned = clean(raw.text)
    title = " ".join(raw.title.split())
    if not cleaned.text.strip() or not title:
        return None
    meta = json.dumps(
        [raw.url, raw.authors, raw.published.isoformat() if raw.published else None, raw.source, raw.section]
    )
    digest = content_hash(title, cleaned.text, meta)
    return Article(
        id=stable_article_id(raw, digest),
        title=title,
        text=cleaned.text,
        url=raw.url,
        authors=raw.authors,
        published=raw.published,
        source=raw.source,
        section=raw.section,
        origin=raw.origin,
        content_hash=digest,
        captions=cleaned.captions,
        ingested_at=now,
    )


def run_ingest(
    paths: Iterable[Path],
    index_root: Path | None = None,
    prune: bool = False,
    rebuild: bool = False,
    settings: Settings | None = None,
    encoder: Encoder | None = None,
    progress: bool = True,
    wait: bool = False,
) -> IngestSummary:
    """Run one ingest job, holding the index's exclusive lock (:mod:`index.lock`) from start to end.

    If another job holds it, fail at once with :class:`index.lock.IndexLockedError` naming it, or with
    ``wait`` say so on stderr and wait for it (then read the version it published).
    """
    settings = settings or get_settings()
    root = Path(index_root or settings.index_dir)
    with index_lock(root, wait=wait, notify=lambda message: print(printable(message), file=sys.stderr, flush=True)):
        return _run_locked(list(paths), root, prune, rebuild, settings, encoder, progress)


@dataclass
class Prior:
    """The published version an ingest run builds on (none on a first run or with ``rebuild``)."""

    root: Path
    name: str | None = None
    manifest: Manifest | None = None
    hashes: dict[str, str] = field(default_factory=dict)

    @property
    def dir(self) -> Path | None:
        return version_dir(self.root, self.name) if self.name else None


@dataclass
class Cleaned:
    """A cleaned article and the id its file had before ids came from the real path (``legacy_article_id``)."""

    article: Article
    former_id: str


@dataclass
class Plan:
    """What a run changes: articles to write, article ids whose chunks go, article ids pruned."""

    changed: list[Article] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changed and not self.removed


@dataclass
class Embedded:
    """The new chunks, numbered, and exactly what the index stores for them."""

    chunks: list[Chunk]
    vectors: np.ndarray
    sentence_vectors: list[np.ndarray]
    next_chunk_id: int


@dataclass
class EmbedInput:
    """What the encoder sees for the new chunks: ``header + text`` and each sentence's span in it."""

    texts: list[str] = field(default_factory=list)
    spans: list[list[tuple[int, int]]] = field(default_factory=list)

    def blocks(self) -> list[tuple[list[str], list[list[tuple[int, int]]]]]:
        """The encoder calls, in order; both engines embed exactly these, so they get the same vectors."""
        return [
            (self.texts[offset : offset + EMBED_BLOCK], self.spans[offset : offset + EMBED_BLOCK])
            for offset in range(0, len(self.texts), EMBED_BLOCK)
        ]


def open_prior(root: Path, embedding: EmbeddingInfo, chunking: ChunkingInfo, rebuild: bool = False) -> Prior:
    """The published version, checked against this run's encoder and chunker settings."""
    name = None if rebuild else current_version(root)
    if not name:
        return Prior(root=root)
    previous_dir = version_dir(root, name)
    manifest = read_manifest(previous_dir)
    errors = manifest.compatibility_errors(embedding, chunking)
    if errors:
        raise IngestError(
            f"the index at {root} was built with other settings ({'; '.join(errors)}); "
            "re-run with --rebuild to build it afresh"
        )
    with connect(previous_dir / METADATA, readonly=True) as conn:
        hashes = article_hashes(conn)
    return Prior(root=root, name=name, manifest=manifest, hashes=hashes)


def clean_item(item: RawArticle | Skipped, now: datetime) -> Cleaned | Skipped:
    """One reader item, cleaned (the per-article step of the read pass; runs wherever the engine puts it)."""
    if isinstance(item, Skipped):
        return item
    article = to_article(item, now)
    if article is None:
        return Skipped(item.origin, "no text left after cleaning")
    return Cleaned(article, legacy_article_id(item, article.content_hash))


def classify(
    items: Iterable[Cleaned | Skipped], prior: Prior, prune: bool, summary: IngestSummary, paths: list[Path]
) -> Plan:
    """Classify against the published version, in input order: unchanged, updated, added, duplicates, pruned."""
    previous_hashes = prior.hashes
    hash_owner = {digest: aid for aid, digest in previous_hashes.items()}
    seen: set[str] = set()
    plan = Plan()
    changed, replaced = plan.changed, plan.replaced
    for item in items:
        if isinstance(item, Skipped):
            summary.skipped.append((item.origin, item.reason))
            continue
        article, former = item.article, item.former_id
        owner = hash_owner.get(article.content_hash)
        if (
            former != article.id
            and former in previous_hashes
            and article.id not in previous_hashes
            and owner in (None, former)
            and not seen & {former, article.id}
        ):
            # the same file, stored under its old id: replace it, do not add it a second time
            seen.update((former, article.id))
            if hash_owner.get(previous_hashes[former]) == former:
                del hash_owner[previous_hashes[former]]
            hash_owner[article.content_hash] = article.id
            summary.updated += 1
            replaced.append(former)
            changed.append(article)
            continue
        if article.id in seen:
            reason = "duplicate" if owner == article.id else "same id as an earlier article; first kept"
            summary.skipped.append((article.origin, f"{reason} ({article.id})"))
            continue
        if owner is not None and owner != article.id:
            seen.add(owner)
            summary.skipped.append((article.origin, f"duplicate of article {owner}"))
            continue
        seen.add(article.id)
        hash_owner[article.content_hash] = article.id
        if article.id in previous_hashes:
            if previous_hashes[article.id] == article.content_hash:
                summary.unchanged += 1
                continue
            summary.updated += 1
            replaced.append(article.id)
        else:
            summary.added += 1
        changed.append(article)
    if not seen:
        raise IngestError(_nothing_found(paths, summary.skipped))
    plan.removed = sorted(set(previous_hashes) - seen) if prune else []
    summary.removed = len(plan.removed)
    return plan


def keep_published(prior: Prior, summary: IngestSummary) -> None:
    """Nothing to write: the summary reports the published version as it is."""
    assert prior.manifest is not None
    summary.chunks_total = prior.manifest.counts.get("chunks", 0)
    summary.articles_total = prior.manifest.counts.get("articles", 0)


def draft_chunks(article: Article, config: ChunkerConfig, encoder: Encoder) -> list[DraftChunk]:
    """One article's chunks before numbering (the chunk pass; runs wherever the engine puts it)."""
    header = chunk_header(article.title, article.source, article.published)
    return chunk_text(article.text, header, config, count_tokens, encoder.count_wordpieces)


def number_chunks(
    changed: list[Article], drafts: list[list[DraftChunk]], next_id: int
) -> tuple[list[Chunk], EmbedInput]:
    """Chunk ids in input order from ``next_id``, and the encoder's input for them, in the same order."""
    chunks: list[Chunk] = []
    embed = EmbedInput()
    for article, article_drafts in zip(changed, drafts, strict=True):
        header = chunk_header(article.title, article.source, article.published)
        for draft in article_drafts:
            chunks.append(
                Chunk(
                    id=next_id + len(chunks),
                    article_id=article.id,
                    ordinal=draft.ordinal,
                    start=draft.start,
                    end=draft.end,
                    text=draft.text,
                    sentences=draft.sentences,
                    n_tokens=draft.n_tokens,
                    headings=list(draft.headings),
                )
            )
            embed.texts.append(header + draft.text)
            shift = len(header) - draft.start
            embed.spans.append([(start + shift, end + shift) for start, end in draft.sentences])
    return chunks, embed


def embed_block(
    encoder: Encoder, texts: list[str], spans: list[list[tuple[int, int]]], settings: Settings
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One encoder call: the chunk vectors and, per chunk, its sentence vectors (what the index stores)."""
    return encoder.embed_with_spans(texts, spans, settings.embed_batch_size)


def embedded(
    chunks: list[Chunk], results: list[tuple[np.ndarray, list[np.ndarray]]], dimension: int, first_id: int
) -> Embedded:
    """The blocks' results, in block order, as the new version's rows (``first_id``: the first new chunk's id)."""
    matrix = np.zeros((0, dimension), dtype=np.float32)
    if results:
        matrix = np.ascontiguousarray(np.concatenate([vectors for vectors, _ in results]), dtype=np.float32)
    per_sentence = [rows for _, sentence_rows in results for rows in sentence_rows]
    return Embedded(chunks=chunks, vectors=matrix, sentence_vectors=per_sentence, next_chunk_id=first_id + len(chunks))


def write_and_publish(
    prior: Prior,
    plan: Plan,
    new: Embedded,
    settings: Settings,
    embedding: EmbeddingInfo,
    chunking: ChunkingInfo,
    summary: IngestSummary,
) -> None:
    """The single writer: a complete new version beside the published one, then the atomic switch."""
    root = prior.root
    staging = make_staging(root)
    try:
        version = new_version_name()
        manifest = _write_version(
            staging,
            version,
            previous_dir=prior.dir,
            changed=plan.changed,
            drop=plan.replaced + plan.removed,
            new_chunks=new.chunks,
            new_vectors=new.vectors,
            new_sentence_vectors=new.sentence_vectors,
            settings=settings,
            embedding=embedding,
            chunking=chunking,
            next_chunk_id=new.next_chunk_id,
        )
        publish(root, staging, version, keep=settings.keep_versions)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise IngestError(
            f"could not write the new index version under {root}: {exc}; the published index is unchanged"
        ) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.version = version
    summary.published = True
    summary.chunks_total = manifest.counts["chunks"]
    summary.articles_total = manifest.counts["articles"]


def _run_locked(
    paths: list[Path],
    root: Path,
    prune: bool,
    rebuild: bool,
    settings: Settings,
    encoder: Encoder | None,
    progress: bool,
) -> IngestSummary:
    started = time.perf_counter()
    encoder = encoder or get_encoder()
    config = chunker_config(settings, encoder)
    chunking = chunking_info(settings, config)
    embedding = EmbeddingInfo(**encoder.info.__dict__)
    summary = IngestSummary()
    prior = open_prior(root, embedding, chunking, rebuild)
    summary.version = prior.name

    # 1. read and clean; classify against the published version
    now = datetime.now(UTC)
    items = tqdm(iter_articles(list(paths)), desc="reading", unit=" articles", disable=not progress)
    plan = classify((clean_item(item, now) for item in items), prior, prune, summary, paths)
    if plan.empty and prior.manifest is not None:
        keep_published(prior, summary)
        summary.seconds = time.perf_counter() - started
        return summary

    # 2. chunk and embed what changed
    drafts = [draft_chunks(article, config, encoder) for article in plan.changed]
    next_id = prior.manifest.next_chunk_id if prior.manifest else 1
    chunks, embed_input = number_chunks(plan.changed, drafts, next_id)
    embed_started = time.perf_counter()
    results = []
    with tqdm(total=len(chunks), desc="embedding", unit=" chunks", disable=not progress) as bar:
        for texts, spans in embed_input.blocks():
            results.append(embed_block(encoder, texts, spans, settings))
            bar.update(len(texts))
    summary.embed_seconds = time.perf_counter() - embed_started
    summary.chunks_embedded = len(chunks)
    new = embedded(chunks, results, embedding.dimension, next_id)

    # 3. write a complete new version beside the published one, then switch
    write_and_publish(prior, plan, new, settings, embedding, chunking, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def _nothing_found(paths: list[Path], skipped: list[tuple[str, str]]) -> str:
    names = ", ".join(str(path) for path in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    detail = f"{len(skipped)} skipped, e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else "no readable files"
    return f"no articles found in {names} ({detail}); nothing was written"


def _write_version(
    staging: Path,
    version: str,
    previous_dir: Path | None,
    changed: list[Article],
    drop: list[str],
    new_chunks: list[Chunk],
    new_vectors: np.ndarray,
    new_sentence_vectors: list[np.ndarray],
    settings: Settings,
    embedding: EmbeddingInfo,
    chunking: ChunkingInfo,
    next_chunk_id: int,
) -> Manifest:
    db_path = staging / METADATA
    if previous_dir is not None:
        shutil.copyfile(previous_dir / METADATA, db_path)
        old_ids = np.load(previous_dir / VECTOR_IDS)
        old_vectors = np.load(previous_dir / VECTOR_DATA)
        old_rows, old_sentences = sentence_vectors.load_previous(previous_dir, len(old_ids), embedding.dimension)
    else:
        old_ids = np.zeros(0, dtype=np.int64)
        old_vectors = np.zeros((0, embedding.dimension), dtype=np.float32)
        old_rows, old_sentences = sentence_vectors.load_previous(staging, 0, embedding.dimension)

    conn = connect(db_path)
    try:
        with conn:
            dropped_chunks: list[int] = []
            for article_id in drop:
                dropped_chunks.extend(delete_article(conn, article_id))
            for article in changed:
                write_article(conn, article)
            write_chunks(conn, new_chunks)
        titles = {a.id: a.title for a in iter_stored_articles(conn)}
        all_chunks = list(iter_chunks(conn))
        conn.execute("VACUUM")
    except sqlite3.OperationalError as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()

    keep = ~np.isin(old_ids, np.array(dropped_chunks, dtype=np.int64))
    ids = np.concatenate([old_ids[keep], np.array([c.id for c in new_chunks], dtype=np.int64)])
    matrix = np.concatenate([old_vectors[keep], new_vectors]).astype(np.float32)
    np.save(staging / VECTOR_IDS, ids)
    np.save(staging / VECTOR_DATA, matrix)
    sentence_matrix, sentence_rows = sentence_vectors.merge(
        old_rows, old_sentences, keep, new_sentence_vectors, embedding.dimension
    )
    sentence_vectors.save(staging, sentence_matrix, sentence_rows)
    info = vectors.choose_kind(len(ids), settings.ann_threshold)
    index = vectors.build(matrix, ids, info, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction)
    vectors.save(index, staging / VECTORS)

    bm25_ids = np.array([c.id for c in all_chunks], dtype=np.int64)
    retriever = bm25.build([f"{titles.get(c.article_id, '')}\n{c.text}" for c in all_chunks])
    bm25.save(retriever, bm25_ids, staging / BM25_DIR)

    files = {str(p.relative_to(staging)): file_info(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC),
        parent=previous_dir.name if previous_dir else None,
        embedding=embedding,
        chunking=chunking,
        vectors=info,
        counts={"articles": len(titles), "chunks": len(all_chunks)},
        next_chunk_id=next_chunk_id,
        files=files,
    )
    (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    return manifest
