"""A hot reload: sentence embeddings computed at query time carry over (keyed by text), and the new version is
warmed before it serves."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from index.encoder import Encoder
from service.answering.engine import Engine
from service.answering.schemas import AskRequest
from service.answering.sentence_cache import SentenceEmbeddingCache

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (ROOT / "samples").iterdir() if p.is_file())


class CountingEncoder:
    """The real encoder, recording which texts the sentence cache asks it to embed."""

    def __init__(self, encoder: Encoder) -> None:
        self.inner = encoder
        self.info = encoder.info
        self.embedded: list[str] = []

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        self.embedded += texts
        return self.inner.embed(texts, batch_size=batch_size)


def test_cache_is_keyed_by_text_not_version(encoder: Encoder) -> None:
    counting = CountingEncoder(encoder)
    cache = SentenceEmbeddingCache(counting)  # type: ignore[arg-type]
    refs = [("a1", 0, 20, "The council met on Monday."), ("a1", 21, 40, "It voted for bike lanes.")]
    first = cache.embed("v1", refs)
    again = cache.embed("v2", [("a9", 5, 25, "The council met on Monday."), *refs])
    assert counting.embedded == [refs[0][3], refs[1][3]]  # nothing embedded twice, whatever the version or article
    np.testing.assert_array_equal(again, np.stack([first[0], first[0], first[1]]))
    np.testing.assert_allclose(first, encoder.embed([r[3] for r in refs]), atol=1e-6)
    assert cache.embed("v3", []).shape == (0, encoder.info.dimension)


def test_reload_warms_the_new_version_before_serving_it(
    tmp_path: Path, encoder: Encoder, caplog: pytest.LogCaptureFixture
) -> None:
    from ingest.job import run_ingest

    root = tmp_path / "index"
    run_ingest(SAMPLES[:-1], index_root=root, encoder=encoder, progress=False)
    engine = Engine(index_root=root, encoder=encoder)
    old_version = engine.index.version
    run_ingest(SAMPLES, index_root=root, encoder=encoder, progress=False)  # one article more
    with caplog.at_level(logging.INFO, logger="byline.engine"):
        assert engine.reload_if_changed()
    messages = [r.getMessage() for r in caplog.records]
    version = engine.index.version
    assert version != old_version
    warmed = [i for i, m in enumerate(messages) if m.startswith(f"warmed index version {version}")]
    loaded = [i for i, m in enumerate(messages) if m == f"loaded index version {version}"]
    assert warmed and loaded and warmed[0] < loaded[0], messages  # warmed before it was switched to
    newest = max(engine.index.articles.values(), key=lambda a: (a.published or date.min, a.id))
    answer = engine.ask(AskRequest(question=newest.title))
    assert answer.index_version == version and not answer.abstained
