"""The Ray engine writes the same index as the local engine: articles, chunks, spans and vectors, incrementally too.

Runs a real local Ray (2 CPUs, no dashboard) over the seed plus the first news articles; skipped when Ray is not
installed (``pip install -e '.[ray]'``; ``make test`` installs it) or ../shared is absent.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.metadata import METADATA, connect, iter_articles, iter_chunks
from index.publish import current_dir
from index.reader import VECTOR_DATA, VECTOR_IDS
from index.sentence_vectors import SENTENCE_ROWS, SENTENCE_VECTORS
from ingest.job import IngestSummary, run_ingest
from tests.conftest import NEWS, ROOT, SEED_DIR, need

NEWS_ARTICLES = 200
VECTOR_TOLERANCE = 1e-5  # max |difference| per component allowed; measured: 0.0 (the engines embed the same blocks)
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed: pip install -e '.[ray]' (make test does)")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")  # a new instance
    yield ray
    ray.shutdown()


def dump(root: Path) -> dict[str, Any]:
    """Everything an index stores, keyed by id, but the ingest timestamps."""
    version = current_dir(root)
    with connect(version / METADATA, readonly=True) as conn:
        articles = {
            a.id: (a.content_hash, a.title, a.text, a.origin, list(map(tuple, a.captions))) for a in iter_articles(conn)
        }
        chunks = {
            c.id: (
                c.article_id,
                c.ordinal,
                c.start,
                c.end,
                c.text,
                list(map(tuple, c.sentences)),
                c.n_tokens,
                c.headings,
            )
            for c in iter_chunks(conn)
        }
    ids = np.load(version / VECTOR_IDS)
    rows = np.load(version / SENTENCE_ROWS)
    sentences = np.load(version / SENTENCE_VECTORS)
    return {
        "articles": articles,
        "chunks": chunks,
        "vectors": dict(zip(ids.tolist(), np.load(version / VECTOR_DATA), strict=True)),
        "sentences": {int(i): sentences[rows[k] : rows[k + 1]] for k, i in enumerate(ids)},
    }


def compare(local: Path, on_ray: Path) -> tuple[int, int, float]:
    a, b = dump(local), dump(on_ray)
    assert a["articles"] == b["articles"]
    assert a["chunks"] == b["chunks"]
    assert a["vectors"].keys() == b["vectors"].keys() == a["chunks"].keys()
    worst = max(float(np.abs(a["vectors"][k] - b["vectors"][k]).max()) for k in a["vectors"])
    for k in a["sentences"]:
        assert a["sentences"][k].shape == b["sentences"][k].shape == (len(a["chunks"][k][5]), a["vectors"][k].size)
        worst = max(worst, float(np.abs(a["sentences"][k].astype(np.float32) - b["sentences"][k]).max()))
    assert worst <= VECTOR_TOLERANCE
    return len(a["articles"]), len(a["chunks"]), worst


def counts(summary: IngestSummary) -> tuple[Any, ...]:
    return (
        summary.added,
        summary.updated,
        summary.unchanged,
        summary.removed,
        summary.skipped,
        summary.chunks_embedded,
        summary.chunks_total,
        summary.articles_total,
        summary.published,
    )


@needs_ray
def test_ray_engine_writes_the_same_index(tmp_path: Path, local_ray: Any, encoder, capsys) -> None:
    from ingest.ray_engine import RayStats, run_ingest_ray

    seed = need(SEED_DIR)
    with need(NEWS).open() as handle:
        records = [json.loads(line) for _, line in zip(range(NEWS_ARTICLES + 3), handle, strict=False)]
    news = tmp_path / "news.jsonl"
    news.write_text("".join(json.dumps(r) + "\n" for r in records[:NEWS_ARTICLES]))
    paths = [seed, news]

    def both(**options: Any) -> tuple[IngestSummary, IngestSummary]:
        local = run_ingest(paths, index_root=tmp_path / "local", encoder=encoder, progress=False, **options)
        stats = RayStats()
        on_ray = run_ingest_ray(
            paths, index_root=tmp_path / "ray", encoder=encoder, progress=False, stats=stats, **options
        )
        assert counts(on_ray) == counts(local)
        return local, on_ray

    first, _ = both()
    assert first.added == NEWS_ARTICLES + 1 and first.chunks_embedded > 10 * NEWS_ARTICLES
    n_articles, n_chunks, worst = compare(tmp_path / "local", tmp_path / "ray")

    # incremental: three added, one changed, one gone (pruned), one duplicate under another id
    changed, gone = records[5], records[10]
    changed["text"] = changed["text"] + "\n\nThis article was updated with a final paragraph."
    duplicate = {**records[20], "id": "copy-of-20"}
    kept = [r for i, r in enumerate(records[:NEWS_ARTICLES]) if i != 10]
    news.write_text("".join(json.dumps(r) + "\n" for r in [*kept, *records[NEWS_ARTICLES:], duplicate]))
    second, _ = both(prune=True)
    assert (second.added, second.updated, second.removed) == (3, 1, 1)
    assert any("duplicate of article" in reason for _, reason in second.skipped)
    assert gone["id"] not in dump(tmp_path / "ray")["articles"]
    n2_articles, n2_chunks, worst2 = compare(tmp_path / "local", tmp_path / "ray")

    # nothing changed: neither engine embeds or publishes
    third, _ = both(prune=True)
    assert (third.chunks_embedded, third.published) == (0, False)
    with capsys.disabled():
        print(
            f"\nray == local: {n_articles} articles, {n_chunks} chunks, max |vector diff| {worst:.2g}; "
            f"after the incremental run {n2_articles} articles, {n2_chunks} chunks, max |vector diff| {worst2:.2g}"
        )


def test_ray_engine_without_ray_says_how_to_install(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['ray'] = None\n"  # import ray now fails, as without the extra
        "from ingest.cli import main\n"
        f"sys.exit(main([{str(ROOT / 'samples')!r}, '--index', {str(tmp_path / 'index')!r}, '--engine', 'ray']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[ray]'" in lines[0], done.stderr
    assert not (tmp_path / "index").exists() or not any((tmp_path / "index").glob("v*"))
