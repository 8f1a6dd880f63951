"""The evaluation metrics on hand-made cases whose right figures are known."""

from __future__ import annotations

import pytest

from eval import metrics
from service.answering.schemas import Quote, Source

ARTICLE = "Russia and Armenia are allies. Trade is roughly 26 percent. Peacekeepers did not act."
TEXTS = {"a1": ARTICLE}


def quote(sentence: str, text: str = ARTICLE) -> Quote:
    start = text.index(sentence)
    return Quote(text=sentence, start=start, end=start + len(sentence))


def source(n: int, quotes: list[Quote], article_id: str = "a1", passage: str = "") -> Source:
    return Source(
        n=n,
        article_id=article_id,
        chunk_id=n,
        title="t",
        quotes=quotes,
        passage=passage or " ".join(q.text for q in quotes),
        passage_start=0,
        passage_end=0,
    )


# ------------------------------------------------------------------------------------------ matching


def test_matching_ignores_case_and_whitespace() -> None:
    assert metrics.normalize("  Roughly\n 26\tPERCENT ") == "roughly 26 percent"
    assert metrics.contains_any("Trade is roughly\n26  Percent.", ["26 percent"])
    assert not metrics.contains_any("Trade is roughly 25 percent.", ["26 percent"])
    assert not metrics.contains_any("anything", ["", "  "])


def test_evidence_is_preferred_to_answer_strings() -> None:
    passages = ["The answer is Sochi.", "They met in Sochi on June 9, 2023."]
    assert metrics.first_hit_rank(passages, ["met in Sochi on June 9"], ["Sochi"]) == 2
    assert metrics.first_hit_rank(passages, [], ["Sochi"]) == 1
    assert metrics.first_hit_rank(passages, ["not there"], ["Sochi"]) is None
    assert metrics.first_hit_rank(passages, [], []) is None


# ---------------------------------------------------------------------------------------- retrieval


def test_hits_and_mrr_over_known_ranks() -> None:
    ranks = [1, 3, None, 7]
    assert metrics.mean(metrics.hit_at(r, 1) for r in ranks) == 0.25
    assert metrics.mean(metrics.hit_at(r, 5) for r in ranks) == 0.5
    assert metrics.mean(metrics.hit_at(r, 10) for r in ranks) == 0.75
    assert metrics.mean(metrics.reciprocal_rank(r, 10) for r in ranks) == pytest.approx((1 + 1 / 3 + 1 / 7) / 4)
    assert metrics.reciprocal_rank(11, 10) == 0.0


def test_hits_curve() -> None:
    assert metrics.hits_curve([1, 3, None], 4) == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert metrics.hits_curve([], 3) == []


# ---------------------------------------------------------------------------------------- citations


def test_markers() -> None:
    assert metrics.citation_markers("A [1]. B [2, 3][1]. C [x] [ 4]") == [1, 2, 3, 1]
    assert metrics.strip_markers("Roughly 26 [1] percent [2,3].") == "Roughly 26  percent ."


def test_valid_citations() -> None:
    sources = [source(1, [quote("Trade is roughly 26 percent.")]), source(2, [quote("Peacekeepers did not act.")])]
    check = metrics.check_citations("Trade is 26 percent [1]. They did not act [2][1].", sources, TEXTS.get)
    assert check.valid is True and check.markers == 3 and check.problems == []


@pytest.mark.parametrize(
    ("answer", "sources", "problem"),
    [
        # a marker without a source
        ("Trade [1]. Allies [3].", [source(1, [quote("Trade is roughly 26 percent.")])], "[3] does not resolve"),
        # a quote whose span points at other text
        ("Trade [1].", [source(1, [Quote(text="Trade is roughly 26 percent.", start=0, end=28)])], "quote at 0:28"),
        # a span outside the article
        ("Trade [1].", [source(1, [Quote(text="x", start=500, end=501)])], "quote at 500:501"),
        # an article the system does not know
        ("Trade [1].", [source(1, [quote("Trade is roughly 26 percent.")], article_id="zz")], "not found"),
        # a source without quotes
        ("Trade [1].", [source(1, [], passage="Trade")], "has no quotes"),
        # an answer that cites nothing
        ("Trade is roughly 26 percent.", [source(1, [quote("Trade is roughly 26 percent.")])], "no citation"),
    ],
)
def test_invalid_citations(answer: str, sources: list[Source], problem: str) -> None:
    check = metrics.check_citations(answer, sources, TEXTS.get)
    assert check.valid is False
    assert any(problem in p for p in check.problems), check.problems


def test_an_abstention_without_markers_has_nothing_to_check() -> None:
    check = metrics.check_citations("The articles do not say.", [], TEXTS.get, abstained=True)
    assert check.valid is None and check.problems == []


def test_one_bad_quote_spoils_a_source() -> None:
    good, bad = quote("Trade is roughly 26 percent."), Quote(text="Trade", start=1, end=6)
    assert metrics.check_citations("x [1]", [source(1, [good, bad])], TEXTS.get).valid is False


def test_cited_sources_are_distinct_and_resolved() -> None:
    one, two, three = (source(n, [quote("Peacekeepers did not act.")]) for n in (1, 2, 3))
    cited = metrics.cited_sources("a [2] b [2, 1] c [9]", [one, two, three])
    assert [s.n for s in cited] == [2, 1]


def test_citation_support_share() -> None:
    trade = source(1, [quote("Trade is roughly 26 percent.")])
    peace = source(2, [quote("Peacekeepers did not act.")])
    allies = source(3, [quote("Peacekeepers did not act.")], passage="Russia and Armenia are allies.")
    assert metrics.citation_support([trade, peace], ["roughly 26 percent"], []) == 0.5
    assert metrics.citation_support([trade, peace, allies], [], ["26 PERCENT", "allies"]) == pytest.approx(2 / 3)
    assert metrics.citation_support([trade], [], []) == 0.0  # nothing to support: an unanswerable question
    assert metrics.citation_support([], ["x"], []) is None


def test_answer_support() -> None:
    trade = source(1, [quote("Trade is roughly 26 percent.")])
    peace = source(2, [quote("Peacekeepers did not act.")])
    assert metrics.answer_supported([peace, trade], ["26 percent"], [], abstained=False) is True
    assert metrics.answer_supported([peace], ["26 percent"], [], abstained=False) is False
    assert metrics.answer_supported([trade], ["26 percent"], [], abstained=True) is False
    assert metrics.answer_supported([trade], [], [], abstained=False) is None


# ------------------------------------------------------------------------------------------- answers


def test_answer_accuracy() -> None:
    assert metrics.answer_correct("Roughly 26\npercent [1].", ["26 percent"], False, False) is True
    assert metrics.answer_correct("Roughly 26 [1] percent.", ["26 percent"], False, False) is True
    assert metrics.answer_correct("Roughly 25 percent [1].", ["26 percent", "a quarter"], False, False) is False
    assert metrics.answer_correct("26 percent, maybe.", ["26 percent"], True, False) is False
    assert metrics.answer_correct("The articles do not say.", [], True, True) is True
    assert metrics.answer_correct("It grew 12 percent [1].", [], False, True) is False
    assert metrics.answer_correct("Anything.", [], False, False) is None


@pytest.mark.parametrize(
    ("short", "answer_any", "right"),
    [
        ("Kimmel", ["Jimmy Kimmel"], True),  # a part of the expected name, as whole words
        ("Jimmy Kimmel", ["Kimmel"], True),  # the expected string inside the short answer
        ("371", ["371 days"], True),
        ("371 days", ["371"], True),
        ("37", ["371 days"], False),  # not a whole word of it
        ("3", ["$3.3 billion"], False),  # one character, and cut out of a longer number
        ("3.3 billion", ["$3.3 billion"], True),
        ("900", ["1,900"], False),  # a number is not cut out of a longer one
        ("the", ["The Hague"], False),  # an article alone matches nothing
        ("of the", ["Bank of the West"], False),
        ("The  HAGUE", ["the hague"], True),  # case and whitespace ignored
        ("Two hours,\nzero minutes and 35 seconds", ["two hours, zero minutes and 35 seconds"], True),
        ("35 seconds", ["two hours, zero minutes and 35 seconds"], True),
        ("5 seconds", ["two hours, zero minutes and 35 seconds"], False),
        ("two hours", ["2:01:09"], False),
        ("Sainz", ["Lando Norris", "Carlos Sainz"], True),  # any one of the answer strings
    ],
)
def test_short_answer_correct(short: str, answer_any: list[str], right: bool) -> None:
    assert metrics.short_answer_correct(short, answer_any, abstained=False, unanswerable=False) is right


def test_a_short_answer_with_nothing_to_judge() -> None:
    assert metrics.short_answer_correct("371", ["371"], abstained=False, unanswerable=True) is None
    assert metrics.short_answer_correct("371", ["371"], abstained=True, unanswerable=False) is None
    assert metrics.short_answer_correct("371", [], abstained=False, unanswerable=False) is None
    assert metrics.short_answer_correct(None, ["371"], abstained=False, unanswerable=False) is None
    assert metrics.short_answer_correct("  ", ["371"], abstained=False, unanswerable=False) is None


def test_short_answer_coverage() -> None:
    # right answers to answerable questions: with a short answer, without, with; a right abstention on an
    # unanswerable question and the wrong or unjudged answers do not count
    given = [True, False, True, False, True, True]
    correct = [True, True, True, True, False, None]
    unanswerable = [False, False, False, True, False, False]
    assert metrics.short_answer_coverage(given, correct, unanswerable) == pytest.approx(2 / 3)
    assert metrics.short_answer_coverage([True], [False], [False]) is None
    with pytest.raises(ValueError):
        metrics.short_answer_coverage([True], [True, False], [False])


def test_abstention_precision_and_recall() -> None:
    result = metrics.abstention([True, True, False, False, True], [True, False, True, False, True])
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(2 / 3)
    assert metrics.abstention([False, False], [True, False]) == metrics.Abstention(precision=None, recall=0.0)
    assert metrics.abstention([True], [False]) == metrics.Abstention(precision=0.0, recall=None)
    with pytest.raises(ValueError):
        metrics.abstention([True], [True, False])


def test_followup_against_standalone_hits() -> None:
    followup_ranks, standalone_ranks = [None, 2, 6, 1], [1, 2, 3, None]
    assert metrics.mean(metrics.hit_at(r, 5) for r in followup_ranks) == 0.5
    assert metrics.mean(metrics.hit_at(r, 5) for r in standalone_ranks) == 0.75


# --------------------------------------------------------------------------------------- aggregation


def test_mean_skips_what_does_not_apply() -> None:
    assert metrics.mean([1.0, None, 0.0, True]) == pytest.approx(2 / 3)
    assert metrics.mean([None, None]) is None
    assert metrics.mean([]) is None


def test_percentiles() -> None:
    latencies = [40.0, 10.0, 30.0, 20.0]
    assert metrics.percentile(latencies, 50) == 25.0
    assert metrics.percentile(latencies, 95) == pytest.approx(38.5)
    assert metrics.percentile(latencies, 0) == 10.0 and metrics.percentile(latencies, 100) == 40.0
    assert metrics.percentile([7.0], 95) == 7.0
    assert metrics.percentile([], 50) is None
    with pytest.raises(ValueError):
        metrics.percentile(latencies, 101)


def test_a_huge_marker_is_not_a_source_number() -> None:
    from service.answering.answer import markers

    huge = "[" + "9" * 5000 + "]"
    assert metrics.citation_markers(f"Text {huge} [2].") == [2]
    assert markers(f"Text {huge} [2].") == [2]
