"""ONNX Runtime backend for the sentence encoder: a local export of the packaged weights, optionally int8-quantized.

The transformer of the sentence-transformers model directory is exported with PyTorch's TorchScript-based ONNX
exporter (no download: the weights are the packaged, already verified ones), checked against PyTorch on probe
sentences, quantized with ONNX Runtime's dynamic quantization for the ``int8`` variant, and cached under
``<cache_dir>/onnx/<model sha256 prefix>-<variant>-r<recipe>/``. Every load checks the cached file against the
sha256 stored beside it (hashed in full, or trusted from a stat stamp written after the last full hash); a missing,
partial or altered export is rebuilt. Beside the export, ONNX Runtime's optimised graph is cached too, so that a
process start loads it instead of re-optimising. Pooling (mean over the attention mask) and L2 normalisation are
done in numpy, so loading a cached export imports neither torch nor sentence-transformers.

Needs ``onnxruntime`` (and ``onnx`` plus ``torch`` for the export itself).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Bump when the export or quantization recipe changes: old cache entries are then simply not used.
RECIPE = 1
OPSET = 17
VARIANTS = ("fp32", "int8")
MODEL_FILE = "model.onnx"
DIGEST_FILE = "model.onnx.sha256"
META_FILE = "export.json"
STAMP_FILE = "model.onnx.stat"
OPTIMIZED_FILE = "model.opt.onnx"
OPTIMIZED_STAMP = "model.opt.json"
# A file changed less than this long before its stamp is written is not stamped: a later change inside the same
# mtime tick (coarse on some filesystems: up to 2 s on FAT) would then keep the stamped stat (git's "racy clean").
RACY_SECONDS = 2.0
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "token_embeddings"

# Export checks. fp32 must reproduce PyTorch's token embeddings (measured: ~2e-6); int8 per-channel weights keep
# the pooled vectors within cosine ~0.99 of PyTorch's (measured mean 0.993, min 0.985 on 200-token news passages).
FP32_MAX_ABS_DIFF = 1e-3
INT8_MIN_COSINE = 0.95
PROBES = (
    "Armenia's prime minister said Russia had failed to protect his country.",
    "Central banks kept interest rates on hold as inflation eased in November, while markets rallied.",
    "Who won?",
    "The storm knocked out power to about 300,000 homes across three states on Sunday night, officials said, and"
    " crews expected repairs to take most of the week because flooded roads kept trucks from reaching the lines.",
)


class OnnxBackendError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelLayout:
    """What the sentence-transformers directory says about pooling and input length."""

    dimension: int
    max_seq_length: int


def read_layout(model_dir: Path) -> ModelLayout:
    """Checks that the model is Transformer -> mean Pooling -> Normalize, the pipeline this backend reproduces."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        sbert = json.loads((model_dir / "sentence_bert_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise OnnxBackendError(f"cannot read the sentence-transformers config in {model_dir}: {exc}") from exc
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        raise OnnxBackendError(f"unsupported module pipeline {kinds} in {model_dir}")
    modes = {key for key, value in pooling.items() if key.startswith("pooling_mode") and value}
    if modes != {"pooling_mode_mean_tokens"}:
        raise OnnxBackendError(f"only mean pooling is supported, {model_dir} uses {sorted(modes)}")
    if sbert.get("do_lower_case"):
        raise OnnxBackendError("sentence_bert_config do_lower_case=true is not supported")
    return ModelLayout(dimension=int(pooling["word_embedding_dimension"]), max_seq_length=int(sbert["max_seq_length"]))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_dir(cache_dir: Path, model_sha256: str, variant: str) -> Path:
    return Path(cache_dir) / "onnx" / f"{model_sha256[:16]}-{variant}-r{RECIPE}"


class WordPieceTokenizer:
    """The model's ``tokenizer.json`` run by the ``tokenizers`` package directly: the fast tokenizer that
    transformers wraps, with the same ids and offsets, without importing transformers (1.8 s) or torch.

    ``tokenizer.json`` carries its own padding (fixed 128) and truncation (128); both are replaced: no padding
    (batches are padded here), truncation at the sentence-transformers ``max_seq_length``.
    """

    def __init__(self, model_dir: Path, max_length: int) -> None:
        self.path = Path(model_dir) / "tokenizer.json"
        self._truncating = self._load()
        self._truncating.enable_truncation(max_length=int(max_length))
        self._whole: Any = None  # for counting (ingest only): loaded on first use, ~70 ms
        self._lock = threading.Lock()
        pad = self._truncating.token_to_id("[PAD]")
        self.pad_token_id = int(pad) if pad is not None else 0

    def _load(self) -> Any:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(self.path))
        except Exception as exc:  # the Rust side raises plain Exceptions
            raise OnnxBackendError(f"cannot load the tokenizer {self.path}: {exc}") from exc
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return tokenizer

    def encode(self, texts: list[str]) -> list[Any]:
        """``tokenizers.Encoding`` per text, with [CLS]/[SEP], truncated to the model's maximum length."""
        return self._truncating.encode_batch(list(texts), add_special_tokens=True)

    def count(self, texts: list[str]) -> list[int]:
        """Word pieces per text, without special tokens and without truncation."""
        with self._lock:
            if self._whole is None:
                self._whole = self._load()
        return [len(e.ids) for e in self._whole.encode_batch(list(texts), add_special_tokens=False)]


def load_tokenizer(model_dir: Path) -> Any:
    """The transformers fast tokenizer of the model, for the one-time export only (inference uses
    :class:`WordPieceTokenizer`, the same ``tokenizer.json`` without transformers).

    Loaded through ``PreTrainedTokenizerFast`` rather than ``AutoTokenizer``: importing the latter imports torch.
    """
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model_dir), local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise OnnxBackendError(f"no fast tokenizer in {model_dir}")
    return tokenizer


# ------------------------------------------------------------------------------------------------ export


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask.astype(np.float32)
    summed = np.matmul(weights[:, None, :], hidden)[:, 0, :]
    pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _export_fp32(model: Any, tokenizer: Any, target: Path) -> None:
    import torch

    class Transformer(torch.nn.Module):
        """BERT without its pooler, with an explicit additive attention mask (traces to plain ONNX ops)."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
            keep = attention_mask.unsqueeze(1).unsqueeze(2).to(hidden.dtype)
            additive = (1.0 - keep) * torch.finfo(hidden.dtype).min
            return self.bert.encoder(hidden, attention_mask=additive).last_hidden_state

    # eval() on the wrapper itself: the exporter restores the wrapper's training flag afterwards, recursively,
    # and a wrapper left in training mode would switch the model's dropout on.
    wrapper = Transformer(model).eval()
    sample = tokenizer(
        ["a short one", "a longer sentence, so that the batch is padded"], padding=True, return_tensors="pt"
    )
    with warnings_silenced():
        torch.onnx.export(
            wrapper,
            (sample["input_ids"], sample["attention_mask"]),
            str(target),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, OUTPUT_NAME)},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    model.eval()


def _quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization: signed int8 weights, one scale per output channel (per-tensor scales lose
    too much: cosine ~0.95 to PyTorch's vectors instead of ~0.99)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quantizer_warning_silenced():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (hidden,) = session.run([OUTPUT_NAME], feeds)
    return np.asarray(hidden)


@contextlib.contextmanager
def warnings_silenced() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def quantizer_warning_silenced() -> Iterator[None]:
    """quantize_dynamic logs a pre-processing hint on the root logger (and would configure logging to do so)."""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    hint = _DropPreprocessHint()
    if guard is not None:
        root.addHandler(guard)
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)
        if guard is not None:
            root.removeHandler(guard)


def export(model_dir: Path, variant: str, out_dir: Path, model_sha256: str) -> dict[str, Any]:
    """Writes ``model.onnx``, its sha256 and ``export.json`` into the (new, empty) directory ``out_dir``.

    The result is checked on probe sentences of other shapes than the traced ones (a shape wrongly frozen into the
    graph would show): fp32 token embeddings against PyTorch's, int8 pooled vectors by cosine to PyTorch's.
    """
    import torch
    from transformers import AutoModel

    if variant not in VARIANTS:
        raise OnnxBackendError(f"unknown ONNX variant {variant!r} (known: {', '.join(VARIANTS)})")
    layout = read_layout(model_dir)
    started = time.perf_counter()
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()
    tokenizer = load_tokenizer(model_dir)
    batch = tokenizer(
        list(PROBES), padding=True, truncation=True, max_length=layout.max_seq_length, return_tensors="pt"
    )
    with torch.no_grad():
        reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    reference = reference.numpy()
    feeds = {name: batch[name].numpy().astype(np.int64) for name in INPUT_NAMES}
    mask = feeds["attention_mask"]

    target = out_dir / MODEL_FILE
    fp32 = target if variant == "fp32" else out_dir / "fp32.onnx"
    _export_fp32(model, tokenizer, fp32)
    max_diff = float(np.abs(_run(fp32, feeds) - reference)[mask.astype(bool)].max())
    if not max_diff <= FP32_MAX_ABS_DIFF:
        raise OnnxBackendError(f"ONNX export differs from PyTorch by {max_diff:.3g} (allowed {FP32_MAX_ABS_DIFF})")
    checks: dict[str, float] = {"fp32_max_abs_diff": max_diff}
    if variant == "int8":
        _quantize_int8(fp32, target)
        fp32.unlink()
        cosine = (_mean_pool(_run(target, feeds), mask) * _mean_pool(reference, mask)).sum(axis=1)
        if not float(cosine.min()) >= INT8_MIN_COSINE:
            raise OnnxBackendError(f"the int8 model's vectors reach cosine {cosine.min():.4f} to PyTorch's only")
        checks |= {"int8_min_cosine": float(cosine.min()), "int8_mean_cosine": float(cosine.mean())}

    digest = file_sha256(target)
    meta: dict[str, Any] = {
        "model_sha256": model_sha256,
        "variant": variant,
        "recipe": RECIPE,
        "opset": OPSET,
        "onnx_sha256": digest,
        "bytes": target.stat().st_size,
        "export_seconds": round(time.perf_counter() - started, 2),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "checks": checks,
        "versions": {name: _version(name) for name in ("torch", "transformers", "onnx", "onnxruntime")},
    }
    (out_dir / DIGEST_FILE).write_text(digest + "\n")
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    for name in (MODEL_FILE, DIGEST_FILE, META_FILE):
        with (out_dir / name).open("rb") as handle:
            os.fsync(handle.fileno())
    return meta


def verify_export(directory: Path, model_sha256: str) -> bool:
    """True when the cached export is complete, unaltered, and made from these weights with this recipe.

    The model file is hashed in full unless its stamp (see :func:`_stamp_matches`) shows it unchanged since a full
    hash that matched: ~0.1 ms instead of ~26 ms for the 23 MB int8 file on every process start.
    """
    try:
        expected = (directory / DIGEST_FILE).read_text().strip()
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not (
        expected == meta.get("onnx_sha256")
        and meta.get("model_sha256") == model_sha256
        and meta.get("recipe") == RECIPE
    ):
        return False
    model, stamp = directory / MODEL_FILE, directory / STAMP_FILE
    try:
        if _stamp_matches(stamp, model, expected):
            return True
        before = model.stat()
        actual = file_sha256(model)
    except OSError:
        return False
    if actual != expected:
        return False
    _write_stamp(stamp, model, before, actual)
    return True


# Stat stamps, git's index approach: the stat of a file whose content was checked is recorded, and a file whose stat
# still equals the recorded one is taken as unchanged without reading it. Any write changes mtime and ctime (ctime
# cannot be set back, unlike mtime), a replaced file has another inode, and a file written within RACY_SECONDS of
# its check is not stamped at all, so a write inside the same timestamp tick cannot go unnoticed.


def _stat_fields(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stamp_matches(stamp: Path, path: Path, digest: str) -> bool:
    """True when ``stamp`` records ``digest`` and exactly the current stat of ``path``."""
    recorded = _read_json(stamp)
    return (
        recorded is not None and recorded.get("sha256") == digest and recorded.get("stat") == _stat_fields(path.stat())
    )


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Writes ``data`` to a temporary file beside ``path``, then renames it into place (readers never see half)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide it from other users of a shared cache
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_stamp(stamp: Path, path: Path, before: os.stat_result, digest: str) -> None:
    """Records ``path``'s stat with the ``digest`` just computed from it, unless it changed meanwhile or too lately;
    a failure (e.g. a read-only cache) only means hashing again next time."""
    try:
        after = path.stat()
        if _stat_fields(after) != _stat_fields(before) or time.time_ns() - after.st_mtime_ns < RACY_SECONDS * 1e9:
            return
        _write_json_atomically(stamp, {"sha256": digest, "stat": _stat_fields(after)})
    except OSError as exc:
        log.debug("cannot stamp %s (it will be hashed again next time): %s", path, exc)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_export(
    model_dir: Path,
    model_sha256: str,
    variant: str,
    cache_dir: Path,
    before_export: Callable[[], None] | None = None,
) -> Path:
    """The path of a verified ``model.onnx`` for ``variant``, exporting it first when the cache has none.

    Exports are built in a temporary directory beside the final one and renamed into place, under a lock file,
    so concurrent processes never see (or both write) a partial export.
    """
    if variant not in VARIANTS:
        raise OnnxBackendError(f"unknown ONNX variant {variant!r} (known: {', '.join(VARIANTS)})")
    final = export_dir(cache_dir, model_sha256, variant)
    if verify_export(final, model_sha256):
        return final / MODEL_FILE
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f".{final.name}.lock"):
        if verify_export(final, model_sha256):  # another process exported it while we waited
            return final / MODEL_FILE
        if final.exists():
            log.warning("discarding an incomplete or altered ONNX export in %s", final)
            shutil.rmtree(final)
        for stale in final.parent.glob(f".{final.name}-*"):  # left by a killed export; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            if before_export is not None:  # e.g. verify the weights: the export is the one reader of them
                before_export()
            meta = export(model_dir, variant, work, model_sha256)
            work.chmod(0o755)
            os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    log.info("exported %s ONNX encoder to %s in %.1f s", variant, final, meta["export_seconds"])
    return final / MODEL_FILE


# ------------------------------------------------------------------------------------------------ inference


def _options(ort: Any, threads: int, spinning: bool, level: Any) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(int(threads), 0)  # 0: ONNX Runtime's default (one per physical core)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level
    # Idle worker threads spin-wait by default, burning a core after every call; on a shared 2-core machine that
    # starves everything else (measured: same throughput without it, ~0.4 ms more per single query).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def _optimized_key(ort: Any, source_sha256: str) -> dict[str, str]:
    """What the optimised graph depends on besides its source: the runtime that optimised it, and at what level."""
    return {
        "onnxruntime": str(ort.__version__),
        "level": "ORT_ENABLE_EXTENDED",
        "machine": platform.machine(),
        "source_sha256": source_sha256,
    }


def _optimized_valid(ort: Any, directory: Path, source_sha256: str) -> bool:
    recorded = _read_json(directory / OPTIMIZED_STAMP)
    if recorded is None or recorded.get("key") != _optimized_key(ort, source_sha256):
        return False
    try:
        return recorded.get("stat") == _stat_fields((directory / OPTIMIZED_FILE).stat())
    except OSError:
        return False


def _build_optimized(ort: Any, source: Path, source_sha256: str, options: Any) -> Any:
    """A session of ``source`` at ORT_ENABLE_EXTENDED that also saves its optimised graph as ``OPTIMIZED_FILE``
    (temporary name, renamed into place, then stamped)."""
    directory = source.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{OPTIMIZED_FILE}-", suffix=".onnx", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        os.close(fd)
        options.optimized_model_filepath = tmp
        session = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        with open(tmp, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise OnnxBackendError("ONNX Runtime wrote no optimised model")
            os.fsync(handle.fileno())
        os.replace(tmp, directory / OPTIMIZED_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    stat = _stat_fields((directory / OPTIMIZED_FILE).stat())  # after the rename, which may change ctime
    _write_json_atomically(directory / OPTIMIZED_STAMP, {"key": _optimized_key(ort, source_sha256), "stat": stat})
    log.info("saved the optimised ONNX graph of %s as %s", source, OPTIMIZED_FILE)
    return session


def open_session(path: Path, options_at: Callable[[Any], Any]) -> tuple[Any, Path]:
    """An ONNX Runtime session of the verified export ``path``, and the file it was loaded from.

    ``options_at(level)`` makes the session options for a graph optimisation level. The optimised graph is cached
    beside the export as ``OPTIMIZED_FILE`` and loaded with optimisation off, with identical outputs (measured, int8:
    ~42 ms instead of ~60 ms for a process's first session; ~18 instead of ~48 ms for a later one, the rest of a
    first load being fresh memory for the weights). It is saved at ORT_ENABLE_EXTENDED, not ALL: ALL adds
    layout transforms for convolutions only (for this model the graphs saved at both levels have the same nodes,
    and run at the same speed: int8 1.55 ms per (1, 12) input, 22.3-22.4 ms per (8, 64) batch) and may save
    hardware-specific nodes. The cache is rebuilt, once, under a lock, for another ONNX Runtime version, machine
    type or source export, or when its stat differs from the stamp's. When it cannot be had (no digest beside
    ``path``, a read-only directory, any failure) the session is made as before: from ``path`` at ORT_ENABLE_ALL.
    """
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel
    directory = path.parent
    optimized = directory / OPTIMIZED_FILE

    def load_optimized() -> Any:
        options = options_at(levels.ORT_DISABLE_ALL)
        return ort.InferenceSession(str(optimized), options, providers=["CPUExecutionProvider"])

    try:
        source_sha256 = (directory / DIGEST_FILE).read_text().strip()
        unloadable = False
        if _optimized_valid(ort, directory, source_sha256):
            try:
                return load_optimized(), optimized
            except Exception as exc:  # onnxruntime raises its own exception types
                log.debug("cannot load the optimised ONNX graph in %s, rebuilding it: %s", directory, exc)
                unloadable = True
        with _locked(directory / f".{OPTIMIZED_FILE}.lock"):
            if not unloadable and _optimized_valid(ort, directory, source_sha256):  # built while we waited
                return load_optimized(), optimized
            for stale in directory.glob(f".{OPTIMIZED_FILE}-*.onnx"):  # left by a killed build; we hold the lock
                stale.unlink(missing_ok=True)
            return _build_optimized(ort, path, source_sha256, options_at(levels.ORT_ENABLE_EXTENDED)), path
    except Exception as exc:
        log.debug("no optimised ONNX graph for %s, optimising at load: %s", path, exc)
    session = ort.InferenceSession(str(path), options_at(levels.ORT_ENABLE_ALL), providers=["CPUExecutionProvider"])
    return session, path


class OnnxEmbedder:
    """Mean-pooled, L2-normalised sentence vectors from an exported transformer, run by ONNX Runtime."""

    def __init__(
        self, model_dir: Path, onnx_path: Path, threads: int = 0, variant: str = "", spinning: bool = False
    ) -> None:
        import onnxruntime as ort

        layout = read_layout(model_dir)
        self.dimension = layout.dimension
        self.max_seq_length = layout.max_seq_length
        self.variant = variant
        self.path = Path(onnx_path)
        self.tokenizer = WordPieceTokenizer(model_dir, self.max_seq_length)
        self._pad_id = self.tokenizer.pad_token_id
        self._session, self.session_path = open_session(
            self.path, lambda level: _options(ort, threads, spinning, level)
        )
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """float32 vectors, one row per text, in input order; each batch is padded to its longest member only."""
        vectors, _ = self.encode_with_spans(texts, None, batch_size=batch_size)
        return vectors

    def encode_with_spans(
        self,
        texts: list[str],
        spans: list[list[tuple[int, int]]] | None,
        batch_size: int = 32,
        special_tokens: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`encode`'s vectors, plus per text one pooled vector per character span (see :func:`pool_spans`).

        The span vectors come from the same forward pass: the batches are exactly :meth:`encode`'s.
        """
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled: list[np.ndarray] = [np.zeros((0, self.dimension), dtype=np.float32) for _ in texts]
        if not texts:
            return out, pooled
        encodings = self.tokenizer.encode(list(texts))
        ids = [e.ids for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        step = max(int(batch_size), 1)
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            width = len(ids[rows[0]])
            input_ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            with self._lock:
                (hidden,) = self._session.run([OUTPUT_NAME], {"input_ids": input_ids, "attention_mask": mask})
            out[rows] = _mean_pool(hidden, mask)
            if spans is not None:
                for r, i in enumerate(rows):
                    n = len(ids[i])
                    pooled[i] = pool_spans(hidden[r, :n], encodings[i].offsets, spans[i], out[i], special_tokens)
        return out, pooled


def pool_spans(
    tokens: np.ndarray,
    offsets: list[tuple[int, int]],
    spans: list[tuple[int, int]],
    fallback: np.ndarray,
    special_tokens: bool = False,
) -> np.ndarray:
    """L2-normalised means of ``tokens`` (n x dim) over each character span: ``(len(spans), dim)`` float32.

    A token belongs to a span when its character range overlaps it. The special tokens ([CLS], [SEP]: empty
    ranges) are left out unless ``special_tokens``, which pools them into every span as into the text vector (a
    span over the whole text then pools exactly the text vector's tokens). Left out, span vectors are nearer the
    sentences embedded alone (measured on 796 sentences of 100 news chunks, onnx-int8: mean cosine 0.673 vs
    0.654, own sentence nearest 71% vs 60%). A span holding no token of the text (empty, or cut off by
    truncation) gets ``fallback``, the text's own vector.
    """
    dim = tokens.shape[1]
    if not spans:
        return np.zeros((0, dim), dtype=np.float32)
    bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = bounds[:, 0], bounds[:, 1]
    special = ends <= starts
    pooled_special = special if special_tokens else np.zeros_like(special)
    wanted = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    inside = (starts[None, :] < wanted[:, 1:2]) & (ends[None, :] > wanted[:, 0:1]) & ~special[None, :]
    inside &= (wanted[:, 1] > wanted[:, 0])[:, None]  # an empty span holds no token
    has_token = inside.any(axis=1)
    # in float64: OpenBLAS's float32 product differs in the last bit with its thread count on some CPUs (a Ray
    # actor runs it on 1 thread, a local ingest on 2), which the stored float16 rows then round apart
    weights = (inside | pooled_special[None, :]).astype(np.float64)
    summed = weights @ tokens.astype(np.float64)
    means = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    result = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    result[~has_token] = fallback
    return np.ascontiguousarray(result, dtype=np.float32)


def load_embedder(
    model_dir: Path,
    model_sha256: str,
    variant: str,
    cache_dir: Path,
    threads: int = 0,
    before_export: Callable[[], None] | None = None,
) -> OnnxEmbedder:
    """Exports (once, cached) and loads the ``variant`` ONNX model of the sentence-transformers ``model_dir``.

    ``before_export`` runs before an export, the only reader of ``model_dir``'s weights: the caller verifies them
    against ``model_sha256`` there. A cached export is verified by its own sha256 (or by the stat stamp of its last
    full check, see :func:`verify_export`) and was made from verified weights.
    """
    path = ensure_export(Path(model_dir), model_sha256, variant, Path(cache_dir), before_export)
    return OnnxEmbedder(Path(model_dir), path, threads=threads, variant=variant)
