"""Retrieval: fusion arithmetic, filters applied before ranking, as_of, diversity, inferred filters."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from service.answering.retrieval import Candidate, diversify, fuse


def test_reciprocal_rank_fusion_arithmetic() -> None:
    dense = (np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7]))
    lexical = (np.array([3, 1]), np.array([12.0, 5.0]))
    fused = fuse(dense, lexical, rrf_k=60)
    assert fused[1].score == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2].score == pytest.approx(1 / 62)
    assert fused[3].score == pytest.approx(1 / 63 + 1 / 61)
    assert (fused[1].dense_rank, fused[1].bm25_rank, fused[2].bm25_rank) == (1, 2, None)
    weighted = fuse(dense, lexical, rrf_k=60, dense_weight=0.0, bm25_weight=2.0)
    assert weighted[3].score == pytest.approx(2 / 61) and weighted[2].score == 0.0


def test_diversity_caps_passages_per_article() -> None:
    cands = [Candidate(i, "a" if i < 5 else f"b{i}", score=10 - i) for i in range(8)]
    chosen = diversify(cands, k=4, per_article=2)
    assert [c.chunk_id for c in chosen] == [0, 1, 5, 6]
    only_one = [Candidate(i, "a", score=10 - i) for i in range(6)]
    assert len(diversify(only_one, k=4, per_article=2)) == 4  # a question about one article keeps its passages


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, encoder):
    """Three dated articles from two publications, written for this test."""
    from ingest.job import run_ingest
    from service.answering.engine import Engine

    folder = tmp_path_factory.mktemp("dated")
    records = [
        {
            "id": "harbor-sept",
            "title": "Harbor pier repairs begin",
            "source": "northgazette.example",
            "published": "2023-09-10",
            "authors": ["Ada Brook"],
            "text": "Repairs to the harbor pier began on Monday. The city expects the pier to reopen in winter.",
        },
        {
            "id": "harbor-oct",
            "title": "Harbor pier repairs stall",
            "source": "bayherald.example",
            "published": "2023-10-12",
            "authors": ["Ben Cole"],
            "text": "Repairs to the harbor pier stalled after a storm. "
            "The city now expects the pier to reopen in spring.",
        },
        {
            "id": "harbor-nov",
            "title": "Harbor pier reopens",
            "source": "northgazette.example",
            "published": "2023-11-20",
            "authors": ["Ada Brook"],
            "text": "The harbor pier reopened on Saturday after months of repairs, the city said.",
        },
    ]
    import json

    (folder / "dated.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    root = tmp_path_factory.mktemp("dated-index")
    run_ingest([folder], index_root=root, encoder=encoder, progress=False)
    return Engine(index_root=Path(root), encoder=encoder)


def ids(response) -> list[str]:
    return [p.article_id for p in response.passages]


def test_as_of_never_uses_later_articles(engine) -> None:
    assert "harbor-nov" in ids(engine.search("When did the harbor pier reopen?", as_of=date(2023, 12, 1)))
    early = engine.search("When did the harbor pier reopen?", as_of=date(2023, 10, 1))
    assert ids(early) == ["harbor-sept"]


def test_explicit_filters_apply_before_ranking(engine) -> None:
    from service.answering.schemas import Filters

    res = engine.search("harbor pier", k=1, filters=Filters(sources=["bayherald.example"]), as_of=date(2024, 1, 1))
    assert ids(res) == ["harbor-oct"]  # k=1 still finds the filtered article: filtering is not post-truncation
    res = engine.search("harbor pier", filters=Filters(authors=["ada brook"]), as_of=date(2024, 1, 1))
    assert set(ids(res)) == {"harbor-sept", "harbor-nov"}
    res = engine.search(
        "harbor pier", filters=Filters(date_from=date(2023, 10, 1), date_to=date(2023, 10, 31)), as_of=date(2024, 1, 1)
    )
    assert ids(res) == ["harbor-oct"]


def test_a_named_publication_and_period_are_preferred_not_enforced(engine) -> None:
    question = "What did the Bay Herald report in October about the pier?"
    res = engine.search(question, as_of=date(2024, 1, 1))
    assert ids(res)[0] == "harbor-oct"
    assert res.preferences.sources == ["bayherald.example"] and res.preferences.date_from == date(2023, 10, 1)
    assert res.filters.sources is None and set(ids(res)) == {"harbor-sept", "harbor-oct", "harbor-nov"}
    plain = engine.search("What did they report about the pier?", as_of=date(2024, 1, 1))
    assert ids(plain)[0] != "harbor-oct"  # without the names, another article leads: the preference did the work
    last_month = engine.search("What happened to the pier last month?", as_of=date(2023, 12, 5))
    assert ids(last_month)[0] == "harbor-nov"


def test_preference_for_a_source_the_question_names_only_as_a_subject(engine) -> None:
    """'told the Bay Herald' names an interviewer, not the article's publication: nothing is excluded."""
    res = engine.search("What did the mayor tell the Bay Herald about the pier reopening?", as_of=date(2024, 1, 1))
    assert "harbor-nov" in ids(res)


def test_a_filter_is_computed_once_and_cannot_be_changed(engine) -> None:
    index = engine.index
    first = index.allowed(sources=["bayherald.example"], as_of=date(2024, 1, 1))
    again = index.allowed(sources=["bayherald.example"], as_of=date(2024, 1, 1))
    assert first is again and first is not None
    with pytest.raises(ValueError):
        first.ids[0] = -1  # shared between requests: read-only
    other = index.allowed(authors=["ada brook"])
    assert other is not None and set(other.ids) != set(first.ids)
    chunk_articles = {index.chunks[int(c)].article_id for c in first.ids}
    assert chunk_articles == {"harbor-oct"}
    # the BM25 mask marks exactly the allowed chunks, in BM25's own document order
    assert set(index.bm25.chunk_ids[first.bm25_mask]) == set(first.ids)
    assert index.allowed(as_of=date(2030, 1, 1)) is None  # nothing is later: no filter at all
