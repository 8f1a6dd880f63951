"""A lean ONNX start: a stamped export is not hashed again, the optimised graph is cached and reused, and every
change (to the file, to its stat, to the runtime) is still caught. Real int8 export, copied to tmp_path to mutate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the ONNX backends are optional")

import index.onnx_backend as backend  # noqa: E402
from index.encoder import MODEL_SHA256, model_path, verify_weights  # noqa: E402
from index.onnx_backend import (  # noqa: E402
    DIGEST_FILE,
    META_FILE,
    MODEL_FILE,
    OPTIMIZED_FILE,
    OPTIMIZED_STAMP,
    STAMP_FILE,
    OnnxEmbedder,
    verify_export,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source() -> Path:
    """The project's cached int8 export (exported first when the cache has none)."""
    from index.settings import get_settings

    weights = model_path()
    path = backend.ensure_export(
        weights, MODEL_SHA256, "int8", get_settings().cache_dir, before_export=lambda: verify_weights(weights)
    )
    return path.parent


@pytest.fixture
def export(source: Path, tmp_path: Path) -> Path:
    """A copy of the export's own three files (no stamps, no optimised graph), last modified an hour ago (a file
    modified just now is not stamped, see test_a_file_changed_just_now_is_not_stamped)."""
    directory = tmp_path / source.name
    directory.mkdir()
    an_hour_ago = time.time_ns() - 3600 * 10**9
    for name in (MODEL_FILE, DIGEST_FILE, META_FILE):
        shutil.copyfile(source / name, directory / name)
        os.utime(directory / name, ns=(an_hour_ago, an_hour_ago))
    return directory


def counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """Calls of ``index.onnx_backend.<name>`` (still run), one entry per call."""
    calls: list[Any] = []
    original: Callable[..., Any] = getattr(backend, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(backend, name, wrapper)
    return calls


def embedder(onnx_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(model_path(), onnx_path, variant="int8")


def real_texts() -> list[str]:
    """News text from the shared corpus where it exists, the project's samples, and a few short questions."""
    corpus = ROOT.parent / "shared" / "corpus" / "news-2023q4.jsonl"
    texts: list[str] = []
    if corpus.is_file():
        with corpus.open() as handle:
            texts += [json.loads(line)["text"] for _, line in zip(range(24), handle, strict=False)]
    texts += [p.read_text(errors="replace") for p in sorted((ROOT / "samples").iterdir()) if p.is_file()]
    return texts + [
        "Taylor Swift attended which NFL match amid rumours of a new romance?",
        "Why does Pashinyan say Russia failed Armenia?",
        "Storm",
    ]


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------------ stat stamp


def test_a_stamped_export_is_not_hashed_again(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = counting(monkeypatch, "file_sha256")
    assert verify_export(export, MODEL_SHA256)
    assert len(hashed) == 1
    stamp = read_json(export / STAMP_FILE)
    assert stamp["sha256"] == (export / DIGEST_FILE).read_text().strip()
    assert stamp["stat"]["size"] == (export / MODEL_FILE).stat().st_size
    assert verify_export(export, MODEL_SHA256)
    assert verify_export(export, MODEL_SHA256)
    assert len(hashed) == 1
    assert not verify_export(export, "0" * 64)  # other weights: refused before any stamp is consulted


@pytest.mark.parametrize("mtime", ["touched", "set back"])
def test_an_altered_byte_is_caught_despite_the_stamp(export: Path, mtime: str) -> None:
    model = export / MODEL_FILE
    assert verify_export(export, MODEL_SHA256)
    assert (export / STAMP_FILE).exists()
    before = model.stat()
    with model.open("r+b") as handle:  # same file, same size, one byte different
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    if mtime == "set back":  # only ctime tells now
        os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = model.stat()
    assert (after.st_size, after.st_ino) == (before.st_size, before.st_ino)
    assert (after.st_mtime_ns == before.st_mtime_ns) == (mtime == "set back")
    assert not verify_export(export, MODEL_SHA256)
    assert not verify_export(export, MODEL_SHA256)


def test_a_stamp_whose_stat_or_digest_differs_is_not_trusted(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = counting(monkeypatch, "file_sha256")
    assert verify_export(export, MODEL_SHA256)
    stamp = read_json(export / STAMP_FILE)
    for field, value in (("ino", stamp["stat"]["ino"] + 1), ("mtime_ns", 1), ("size", 1), ("ctime_ns", 1)):
        (export / STAMP_FILE).write_text(json.dumps({**stamp, "stat": {**stamp["stat"], field: value}}))
        calls = len(hashed)
        assert verify_export(export, MODEL_SHA256)
        assert len(hashed) == calls + 1, field
        assert read_json(export / STAMP_FILE) == stamp  # stamped again, with the real stat
    (export / STAMP_FILE).write_text(json.dumps({**stamp, "sha256": "0" * 64}))
    assert verify_export(export, MODEL_SHA256)
    assert len(hashed) == 6

    # A copy of the export carries the stamp along, but not the stat: hashed in full once, then stamped anew.
    copy = export.parent / "copy"
    shutil.copytree(export, copy)
    assert read_json(copy / STAMP_FILE) == stamp
    assert verify_export(copy, MODEL_SHA256) and verify_export(copy, MODEL_SHA256)
    assert len(hashed) == 7
    assert read_json(copy / STAMP_FILE)["stat"]["ino"] == (copy / MODEL_FILE).stat().st_ino


def test_a_file_changed_just_now_is_not_stamped(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = counting(monkeypatch, "file_sha256")
    os.utime(export / MODEL_FILE)  # mtime now: a further write within the same mtime tick would not show
    assert verify_export(export, MODEL_SHA256) and verify_export(export, MODEL_SHA256)
    assert len(hashed) == 2
    assert not (export / STAMP_FILE).exists()


# ------------------------------------------------------------------------------------------------ optimised graph


def test_the_optimised_graph_is_built_once_then_reused(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = counting(monkeypatch, "_build_optimized")
    (export / f".{OPTIMIZED_FILE}-killed.onnx").write_bytes(b"half a model")  # left by a killed build
    first = embedder(export / MODEL_FILE)
    assert len(built) == 1 and first.session_path == export / MODEL_FILE
    optimized = export / OPTIMIZED_FILE
    stat = optimized.stat()
    stamp = read_json(export / OPTIMIZED_STAMP)
    assert stamp["key"]["source_sha256"] == (export / DIGEST_FILE).read_text().strip()
    assert stamp["key"]["onnxruntime"] == __import__("onnxruntime").__version__
    assert stamp["stat"]["ino"] == stat.st_ino
    assert sorted(p.name for p in export.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")) == []

    second = embedder(export / MODEL_FILE)
    third = embedder(export / MODEL_FILE)
    assert len(built) == 1
    assert second.session_path == third.session_path == optimized
    assert second.path == export / MODEL_FILE  # the public attribute still names the verified export
    again = optimized.stat()
    assert (again.st_ino, again.st_mtime_ns, again.st_size) == (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    texts = real_texts()[-6:]
    np.testing.assert_array_equal(first.encode(texts), second.encode(texts))


def test_optimised_vectors_equal_the_plain_sessions(export: Path, tmp_path: Path) -> None:
    """The optimised graph loaded with optimisation off gives today's vectors: a session of the export alone (no
    digest beside it, so no cache) at ORT_ENABLE_ALL."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(export / MODEL_FILE, alone / MODEL_FILE)
    plain = embedder(alone / MODEL_FILE)
    assert plain.session_path == alone / MODEL_FILE
    assert sorted(p.name for p in alone.iterdir()) == [MODEL_FILE]

    embedder(export / MODEL_FILE)  # builds the optimised graph
    cached = embedder(export / MODEL_FILE)
    assert cached.session_path == export / OPTIMIZED_FILE
    texts = real_texts()
    vectors, spans = cached.encode_with_spans(texts, [[(0, 5)] for _ in texts], batch_size=8)
    expected, expected_spans = plain.encode_with_spans(texts, [[(0, 5)] for _ in texts], batch_size=8)
    np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(spans), np.concatenate(expected_spans), rtol=0, atol=1e-6)
    np.testing.assert_allclose(cached.encode(texts[-1:]), plain.encode(texts[-1:]), rtol=0, atol=1e-6)


def other_runtime(export: Path) -> None:
    stamp = read_json(export / OPTIMIZED_STAMP)
    stamp["key"]["onnxruntime"] = "1.0.0"
    (export / OPTIMIZED_STAMP).write_text(json.dumps(stamp))


def other_source(export: Path) -> None:
    stamp = read_json(export / OPTIMIZED_STAMP)
    stamp["key"]["source_sha256"] = "0" * 64
    (export / OPTIMIZED_STAMP).write_text(json.dumps(stamp))


def other_stat(export: Path) -> None:
    os.utime(export / OPTIMIZED_FILE, ns=(1, 1))


def replaced_by_garbage(export: Path) -> None:
    """An unloadable file that the stamp matches (as if stamped, then damaged without a trace in its stat)."""
    (export / OPTIMIZED_FILE).write_bytes(b"not an onnx model")
    stamp = read_json(export / OPTIMIZED_STAMP)
    stamp["stat"] = backend._stat_fields((export / OPTIMIZED_FILE).stat())
    (export / OPTIMIZED_STAMP).write_text(json.dumps(stamp))


def missing(export: Path) -> None:
    (export / OPTIMIZED_FILE).unlink()


@pytest.mark.parametrize("stale", [other_runtime, other_source, other_stat, replaced_by_garbage, missing])
def test_a_stale_optimised_graph_is_rebuilt(
    export: Path, monkeypatch: pytest.MonkeyPatch, stale: Callable[[Path], None]
) -> None:
    built = counting(monkeypatch, "_build_optimized")
    embedder(export / MODEL_FILE)
    stale(export)
    rebuilt = embedder(export / MODEL_FILE)
    assert len(built) == 2 and rebuilt.session_path == export / MODEL_FILE
    assert read_json(export / OPTIMIZED_STAMP)["key"] == backend._optimized_key(
        __import__("onnxruntime"), (export / DIGEST_FILE).read_text().strip()
    )
    reused = embedder(export / MODEL_FILE)
    assert len(built) == 2 and reused.session_path == export / OPTIMIZED_FILE
    texts = real_texts()[-3:]
    np.testing.assert_allclose(reused.encode(texts), rebuilt.encode(texts), rtol=0, atol=1e-6)


def make_read_only(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mode 0555. As root, where modes do not bind, creating a file in ``directory`` is made to fail as it does for
    other users: the lock file (the first file the build creates) and temporary files."""
    directory.chmod(0o555)
    probe = directory / ".probe"
    try:
        probe.touch()
    except PermissionError:
        return
    probe.unlink()
    real_mkstemp = backend.tempfile.mkstemp

    def refuse_lock(path: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        if Path(kwargs.get("dir", "")) == directory:
            raise PermissionError(13, "Permission denied", str(directory))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(backend, "_locked", refuse_lock)
    monkeypatch.setattr(backend.tempfile, "mkstemp", mkstemp)


def test_a_read_only_export_falls_back_to_optimising_at_load(
    export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = counting(monkeypatch, "file_sha256")
    make_read_only(export, monkeypatch)
    try:
        assert verify_export(export, MODEL_SHA256) and verify_export(export, MODEL_SHA256)
        assert len(hashed) == 2  # no stamp could be written: hashed in full each time, as before
        loaded = embedder(export / MODEL_FILE)
        assert loaded.session_path == export / MODEL_FILE
        assert sorted(p.name for p in export.iterdir()) == sorted([MODEL_FILE, DIGEST_FILE, META_FILE])
        texts = real_texts()[-3:]
        assert loaded.encode(texts).shape == (3, 384)
    finally:
        export.chmod(0o755)


def test_any_failure_to_build_falls_back_to_optimising_at_load(export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(backend, "_build_optimized", fail)
    loaded = embedder(export / MODEL_FILE)
    assert loaded.session_path == export / MODEL_FILE
    assert not (export / OPTIMIZED_FILE).exists()
    assert loaded.encode(["Storm"]).shape == (1, 384)


CONCURRENT = r"""
import json, sys
from pathlib import Path
from index.encoder import model_path
from index.onnx_backend import OnnxEmbedder
embedder = OnnxEmbedder(model_path(), Path(sys.argv[1]), variant="int8")
print(json.dumps({"from": embedder.session_path.name, "vector": embedder.encode(["Storm"])[0].tolist()}))
"""


def test_processes_starting_at_once_share_one_build(export: Path) -> None:
    """Two processes on a fresh export: at most one builds (the other waits on the lock, then loads the result);
    neither sees a partial file, and no temporary file is left."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(export / MODEL_FILE)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["from"] for r in results) in ([MODEL_FILE, OPTIMIZED_FILE], [OPTIMIZED_FILE, OPTIMIZED_FILE])
    np.testing.assert_allclose(results[0]["vector"], results[1]["vector"], rtol=0, atol=1e-6)
    leftovers = [p.name for p in export.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert leftovers == []
    assert embedder(export / MODEL_FILE).session_path == export / OPTIMIZED_FILE
