"""The ingest job: read -> clean -> chunk -> embed -> write a new index version -> publish atomically.

Incremental: an article whose id and content hash are already in the published version is skipped
without embedding; a changed one replaces its chunks; with ``prune`` the articles not seen in this run
are removed; an article with the same content as another one is stored once. Unchanged chunks keep
their ids and vectors.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from index import bm25, sentence_vectors, vectors
from index.encoder import Encoder, get_encoder
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
from index.models import Article, Chunk, RawArticle, content_hash, stable_article_id
from index.publish import current_version, make_staging, new_version_name, publish, version_dir
from index.reader import BM25_DIR, VECTOR_DATA, VECTOR_IDS, VECTORS
from index.settings import Settings, get_settings
from index.tokens import count_tokens
from ingest.chunker import ChunkerConfig, chunk_header, chunk_text
from ingest.cleaner import clean
from ingest.readers import Skipped, iter_articles

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
        return "\n".join(lines)


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
) -> IngestSummary:
    started = time.perf_counter()
    settings = settings or get_settings()
    root = Path(index_root or settings.index_dir)
    encoder = encoder or get_encoder()
    config = chunker_config(settings, encoder)
    chunking = chunking_info(settings, config)
    embedding = EmbeddingInfo(**encoder.info.__dict__)
    summary = IngestSummary()

    previous_name = None if rebuild else current_version(root)
    previous: Manifest | None = None
    previous_hashes: dict[str, str] = {}
    if previous_name:
        previous_dir = version_dir(root, previous_name)
        previous = read_manifest(previous_dir)
        errors = previous.compatibility_errors(embedding, chunking)
        if errors:
            raise IngestError(
                f"the index at {root} was built with other settings ({'; '.join(errors)}); "
                "re-run with --rebuild to build it afresh"
            )
        with connect(previous_dir / METADATA, readonly=True) as conn:
            previous_hashes = article_hashes(conn)
    summary.version = previous_name

    # 1. read and clean; classify against the published version
    now = datetime.now(UTC)
    hash_owner = {digest: aid for aid, digest in previous_hashes.items()}
    seen: set[str] = set()
    changed: list[Article] = []
    replaced: list[str] = []
    for item in tqdm(iter_articles(list(paths)), desc="reading", unit=" articles", disable=not progress):
        if isinstance(item, Skipped):
            summary.skipped.append((item.origin, item.reason))
            continue
        article = to_article(item, now)
        if article is None:
            summary.skipped.append((item.origin, "no text left after cleaning"))
            continue
        owner = hash_owner.get(article.content_hash)
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
    removed = sorted(set(previous_hashes) - seen) if prune else []
    summary.removed = len(removed)

    if not changed and not removed and previous is not None:
        summary.chunks_total = previous.counts.get("chunks", 0)
        summary.articles_total = previous.counts.get("articles", 0)
        summary.seconds = time.perf_counter() - started
        return summary

    # 2. chunk and embed what changed
    next_id = previous.next_chunk_id if previous else 1
    new_chunks: list[Chunk] = []
    embed_texts: list[str] = []
    embed_spans: list[list[tuple[int, int]]] = []  # each sentence's span in its embedded text (header + chunk)
    for article in changed:
        header = chunk_header(article.title, article.source, article.published)
        for draft in chunk_text(article.text, header, config, count_tokens, encoder.count_wordpieces):
            new_chunks.append(
                Chunk(
                    id=next_id,
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
            embed_texts.append(header + draft.text)
            shift = len(header) - draft.start
            embed_spans.append([(start + shift, end + shift) for start, end in draft.sentences])
            next_id += 1
    embed_started = time.perf_counter()
    new_vectors = np.zeros((len(embed_texts), embedding.dimension), dtype=np.float32)
    new_sentence_vectors: list[np.ndarray] = []
    with tqdm(total=len(embed_texts), desc="embedding", unit=" chunks", disable=not progress) as bar:
        for offset in range(0, len(embed_texts), EMBED_BLOCK):
            block = embed_texts[offset : offset + EMBED_BLOCK]
            chunk_vectors, per_sentence = encoder.embed_with_spans(
                block, embed_spans[offset : offset + EMBED_BLOCK], settings.embed_batch_size
            )
            new_vectors[offset : offset + len(block)] = chunk_vectors
            new_sentence_vectors.extend(per_sentence)
            bar.update(len(block))
    summary.embed_seconds = time.perf_counter() - embed_started
    summary.chunks_embedded = len(new_chunks)

    # 3. write a complete new version beside the published one, then switch
    staging = make_staging(root)
    try:
        version = new_version_name()
        manifest = _write_version(
            staging,
            version,
            previous_dir=version_dir(root, previous_name) if previous_name else None,
            changed=changed,
            drop=replaced + removed,
            new_chunks=new_chunks,
            new_vectors=new_vectors,
            new_sentence_vectors=new_sentence_vectors,
            settings=settings,
            embedding=embedding,
            chunking=chunking,
            next_chunk_id=next_id,
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
    summary.seconds = time.perf_counter() - started
    return summary


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
