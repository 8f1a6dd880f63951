"""A lean process start on the default onnx-int8 path: `byline ask` imports no torch, transformers or
sentence-transformers (checked with ``python -X importtime``), and the BM25 index loads without scipy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: the ONNX backends are optional")

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sentence_transformers")


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "BYLINE_EMBEDDING_BACKEND": "onnx-int8"}


# Runs the console script as ``python <script>`` would, then names the top-level packages in sys.modules (an import
# that failed, e.g. of an optional dependency, is listed by -X importtime but never reaches sys.modules).
PROBE = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("IMPORTED " + " ".join(sorted({n.split(".")[0] for n, m in list(sys.modules.items()) if m is not None})),
          file=sys.stderr)
"""


def imported_packages(stderr: str) -> set[str]:
    """Top-level packages left in sys.modules, as PROBE printed them."""
    lines = [line for line in stderr.splitlines() if line.startswith("IMPORTED ")]
    assert lines, stderr[-3000:]
    return set(lines[-1].split()[1:])


def importtime_ms(stderr: str, package: str) -> float:
    """The largest cumulative import time ``-X importtime`` shows for one of ``package``'s modules."""
    times = [
        int(line.split("|")[1]) / 1000
        for line in stderr.splitlines()
        if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip().split(".")[0] == package
    ]
    return max(times, default=0.0)


def run_python(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env() | extra, capture_output=True, text=True, timeout=300, check=False
    )


def test_byline_ask_imports_no_torch_transformers_or_sentence_transformers(sample_index: Path) -> None:
    byline = str(Path(sys.executable).with_name("byline"))
    command = [byline, "ask", "--index", str(sample_index), "When is the Harbor City marathon?"]
    warm = run_python(*command)  # a missing ONNX export is made here (that one-time export does import torch)
    assert warm.returncode == 0, warm.stderr[-3000:]
    result = run_python("-X", "importtime", "-c", PROBE, *command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "byline ask printed no answer"
    packages = imported_packages(result.stderr)
    assert {"onnxruntime", "tokenizers", "faiss", "bm25s"} <= packages  # the check sees what was imported
    heavy = {name: importtime_ms(result.stderr, name) for name in sorted(packages & set(HEAVY))}
    assert not heavy, f"imported (cumulative ms): {heavy}"
    # a "when" question reads entities: spaCy is imported, but not the command line its package re-exports
    assert "spacy" in packages and not packages & {"weasel", "jinja2"}, sorted(packages & {"weasel", "jinja2"})


LOAD_AND_SEARCH = r"""
import sys
from pathlib import Path
from index.reader import load_index

index = load_index(Path(sys.argv[1]))
ids, scores = index.bm25.search("marathon runners harbor", 5)
assert len(ids) > 0, "no BM25 hit"
assert "scipy" not in sys.modules, sorted(m for m in sys.modules if m.startswith("scipy"))
import scipy.sparse  # still importable by anyone who needs it

print("ok")
"""


def test_bm25_index_loads_and_scores_without_scipy(sample_index: Path) -> None:
    result = run_python("-c", LOAD_AND_SEARCH, str(sample_index))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


BUILD = r"""
import sys
from pathlib import Path
import numpy as np
if sys.argv[2] == "scipy-first":
    import scipy.sparse
from index import bm25

texts = [p.read_text(errors="replace") for p in sorted(Path("samples").iterdir()) if p.is_file()]
bm25.save(bm25.build(texts), np.arange(len(texts)), Path(sys.argv[1]))
print(bm25.bm25s.SCIPY_AVAILABLE)
"""


def test_bm25_build_is_the_same_with_or_without_scipy_imported(tmp_path: Path) -> None:
    outputs = {}
    for mode in ("scipy-first", "lean"):
        # a fixed hash seed: bm25s numbers the vocabulary in set order, which string hashing randomises per process
        result = run_python("-c", BUILD, str(tmp_path / mode), mode, PYTHONHASHSEED="0")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[mode] = result.stdout.strip()
    assert outputs == {"scipy-first": "True", "lean": "False"}
    files = sorted(p.name for p in (tmp_path / "lean").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "scipy-first").iterdir()) and files
    for name in files:
        assert (tmp_path / "lean" / name).read_bytes() == (tmp_path / "scipy-first" / name).read_bytes(), name


CONCURRENT_SPACY = r"""
import threading
from service.answering import followup
from service.answering.reading import entities

errors = []


def run(job):
    try:
        job()
    except Exception as exc:
        errors.append(repr(exc))


jobs = [lambda: entities.entities(["Max Verstappen won in Montreal."]), lambda: followup.parse("Who is he?")] * 2
threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
print("ok")
"""


def test_spacy_imported_from_several_threads_at_once_is_whole_in_each() -> None:
    pytest.importorskip("spacy")
    result = run_python("-c", CONCURRENT_SPACY)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
