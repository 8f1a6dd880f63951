"""The ONNX Runtime backends: exported locally with the network unreachable, cached and verified, close to torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the ONNX backends are optional")
pytest.importorskip("onnx", reason="onnx is not installed: the ONNX export needs it")

from index.encoder import MODEL_SHA256, Encoder, EncoderError  # noqa: E402
from index.onnx_backend import DIGEST_FILE, META_FILE, MODEL_FILE, export_dir, file_sha256  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

SENTENCES = [
    "Why does Pashinyan say Russia failed Armenia?",
    "Taylor Swift attended which NFL match amid rumours of a new romance?",
    "The central bank left interest rates unchanged on Wednesday, saying inflation was easing faster than expected.",
    "Storm",
    # Longer than the model's 256 word pieces: every backend must truncate it the same way.
    " ".join(["Officials said the flooding closed roads across the region and cut power to thousands of homes."] * 30),
]

# Measured on 600 news passages of ~200 tokens: int8 per-channel vectors reach cosine 0.993 to torch's on average,
# 0.984 at worst (the batch a text is padded with moves it by up to ~0.01); fp32 reproduces torch to ~1e-7.
INT8_MIN_COSINE = 0.97
INT8_MEAN_COSINE = 0.985
FP32_MIN_COSINE = 0.9999

SCRIPT = r"""
import json, socket, sys

def refuse(*args, **kwargs):
    raise OSError("network access attempted during the ONNX export")

socket.socket.connect = refuse
socket.create_connection = refuse

from index.encoder import get_encoder
encoder = get_encoder()
assert encoder.info.backend == "onnx-int8", encoder.info
print(json.dumps(encoder.embed(json.loads(sys.argv[1]), batch_size=8).tolist()))
"""


@pytest.fixture(scope="module")
def torch_vectors(encoder: Encoder) -> np.ndarray:
    reference = encoder if encoder.info.backend == "torch" else Encoder("torch")
    return reference.embed(SENTENCES, batch_size=8)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Exports the int8 model in a fresh process with sockets refused, via the settings (BYLINE_* variables)."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "BYLINE_CACHE_DIR": str(cache),
        "BYLINE_EMBEDDING_BACKEND": "onnx-int8",
        "HOME": str(cache),
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(SENTENCES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    vectors = np.asarray(json.loads(result.stdout.strip().splitlines()[-1]), dtype=np.float32)
    return cache, vectors


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_int8_export_offline_is_close_to_torch(int8_export: tuple[Path, np.ndarray], torch_vectors: np.ndarray) -> None:
    _, vectors = int8_export
    assert vectors.shape == torch_vectors.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cos = cosines(vectors, torch_vectors)
    assert cos.min() >= INT8_MIN_COSINE, cos
    assert cos.mean() >= INT8_MEAN_COSINE, cos


def test_export_is_cached_verified_and_reused(
    int8_export: tuple[Path, np.ndarray], torch_vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, vectors = int8_export
    directory = export_dir(cache, MODEL_SHA256, "int8")
    model = directory / MODEL_FILE
    meta = json.loads((directory / META_FILE).read_text())
    assert (directory / DIGEST_FILE).read_text().strip() == meta["onnx_sha256"] == file_sha256(model)
    assert meta["model_sha256"] == MODEL_SHA256 and meta["variant"] == "int8"
    assert meta["checks"]["int8_min_cosine"] >= INT8_MIN_COSINE
    assert [p.name for p in (cache / "onnx").iterdir() if not p.name.startswith(".")] == [directory.name]
    before = model.stat()

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached export should have been reused")

    monkeypatch.setattr("index.onnx_backend.export", no_export)
    encoder = Encoder("onnx-int8", cache_dir=cache)
    after = model.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert encoder.info.backend == "onnx-int8"
    np.testing.assert_allclose(encoder.embed(SENTENCES, batch_size=8), vectors, atol=1e-5)


def test_altered_export_is_rebuilt(int8_export: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    source, _ = int8_export
    cache = tmp_path / "cache"
    shutil.copytree(source, cache)
    model = export_dir(cache, MODEL_SHA256, "int8") / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    corrupted = file_sha256(model)

    encoder = Encoder("onnx-int8", cache_dir=cache)
    digest = (model.parent / DIGEST_FILE).read_text().strip()
    assert file_sha256(model) == digest != corrupted
    assert encoder.embed_query(SENTENCES[0]).shape == (384,)


def test_fp32_reproduces_torch(tmp_path: Path, encoder: Encoder, torch_vectors: np.ndarray) -> None:
    onnx = Encoder("onnx", cache_dir=tmp_path)
    assert onnx.info.backend == "onnx"
    assert (onnx.info.dimension, onnx.max_wordpieces) == (384, 254)
    assert onnx.count_wordpieces(SENTENCES) == encoder.count_wordpieces(SENTENCES)
    vectors = onnx.embed(SENTENCES, batch_size=2)  # several batches, sorted by length and put back in order
    assert vectors.dtype == np.float32 and vectors.flags["C_CONTIGUOUS"]
    assert cosines(vectors, torch_vectors).min() >= FP32_MIN_COSINE
    assert cosines(onnx.embed_query(SENTENCES[2])[None, :], torch_vectors[2:3])[0] >= FP32_MIN_COSINE
    assert onnx.embed([]).shape == (0, 384)


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(EncoderError, match="unsupported embedding backend"):
        Encoder("onnx-fp16")


def real_texts() -> list[str]:
    """Real news text: the shared corpus where it exists, else the project's samples; plus awkward strings."""
    corpus = ROOT.parent / "shared" / "corpus" / "news-2023q4.jsonl"
    texts: list[str] = []
    if corpus.is_file():
        with corpus.open() as handle:
            for _, line in zip(range(60), handle, strict=False):
                texts.append(json.loads(line)["text"])
    texts += [p.read_text(errors="replace") for p in sorted((ROOT / "samples").iterdir()) if p.is_file()]
    return texts + ["", "  ", "Ünïcödé — “quotes” café naïve 東京 😀 tab\tand\nnewline", *SENTENCES]


def test_tokenizers_package_matches_the_transformers_fast_tokenizer() -> None:
    from index.encoder import model_path
    from index.onnx_backend import WordPieceTokenizer, load_tokenizer

    path = model_path()
    texts = real_texts()
    ours = WordPieceTokenizer(path, 256)
    theirs = load_tokenizer(path)
    expected = theirs(texts, truncation=True, max_length=256, return_offsets_mapping=True)
    encodings = ours.encode(texts)
    assert [e.ids for e in encodings] == expected["input_ids"]
    assert [[tuple(o) for o in e.offsets] for e in encodings] == [
        [tuple(o) for o in m] for m in expected["offset_mapping"]
    ]
    assert max(len(e.ids) for e in encodings) == 256  # truncation was exercised
    whole = theirs(texts, add_special_tokens=False, truncation=False)["input_ids"]
    assert ours.count(texts) == [len(ids) for ids in whole]
    assert ours.pad_token_id == theirs.pad_token_id
