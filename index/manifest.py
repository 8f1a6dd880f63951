"""``manifest.json``: what an index version was built with, and the checksums of its files."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class IndexError_(RuntimeError):
    """An index that cannot be used: missing, corrupt, or built with other settings."""


class EmbeddingInfo(BaseModel):
    name: str
    package: str
    package_version: str
    dimension: int
    max_seq_length: int
    backend: str
    normalized: bool = True


CHUNKER_VERSION = 2
"""1: sentence-bounded chunks. 2: headings marked in each chunk, and a vector per sentence from the chunk pass."""


class ChunkingInfo(BaseModel):
    version: int = Field(default=1, description="Chunker version (CHUNKER_VERSION) that built the index.")
    target_tokens: int
    max_tokens: int
    overlap_sentences: int
    max_wordpieces: int
    tokenizer: str = Field(description="tiktoken encoding used for sizes")
    header: str = "title | source | Month D, YYYY"


class VectorInfo(BaseModel):
    kind: str = Field(description="flat | hnsw")
    reason: str
    metric: str = "inner_product"
    params: dict[str, int] = Field(default_factory=dict)


class FileInfo(BaseModel):
    size: int
    sha256: str


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    version: str
    created_at: datetime
    parent: str | None = None
    embedding: EmbeddingInfo
    chunking: ChunkingInfo
    vectors: VectorInfo
    counts: dict[str, int]
    next_chunk_id: int
    files: dict[str, FileInfo]

    def compatibility_errors(self, embedding: EmbeddingInfo, chunking: ChunkingInfo | None) -> list[str]:
        """Why this index cannot be used by code running ``embedding`` (and, for ingest, ``chunking``)."""
        errors = []
        mine = self.embedding
        for field in ("name", "dimension", "backend", "normalized"):
            if getattr(mine, field) != getattr(embedding, field):
                errors.append(
                    f"embedding {field}: index has {getattr(mine, field)!r}, running code has "
                    f"{getattr(embedding, field)!r}"
                )
        if chunking is not None:
            for field, value in chunking.model_dump().items():
                if getattr(self.chunking, field) != value:
                    errors.append(
                        f"chunking {field}: index has {getattr(self.chunking, field)!r}, settings have {value!r}"
                    )
        return errors


def file_info(path: Path) -> FileInfo:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return FileInfo(size=path.stat().st_size, sha256=digest.hexdigest())


def read_manifest(version_dir: Path) -> Manifest:
    path = version_dir / MANIFEST
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise IndexError_(f"index file missing: {path}") from exc
    except (OSError, ValueError) as exc:
        raise IndexError_(f"index file corrupt: {path}: {str(exc).splitlines()[0]}") from exc


def verify_files(version_dir: Path, manifest: Manifest) -> None:
    """Check every file the manifest names against its size and sha256; name the first bad one."""
    for name, expected in manifest.files.items():
        path = version_dir / name
        if not path.is_file():
            raise IndexError_(f"index file missing: {path}")
        actual = file_info(path)
        if actual.size != expected.size:
            raise IndexError_(
                f"index file truncated or changed: {path} ({actual.size} bytes, expected {expected.size})"
            )
        if actual.sha256 != expected.sha256:
            raise IndexError_(f"index file corrupt: {path} (checksum mismatch)")
