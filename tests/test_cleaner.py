"""ingest.cleaner: publisher boilerplate out, the article (with its captions and bio line) kept."""

from __future__ import annotations

import json
import time
import unicodedata
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.cleaner import Cleaned, clean
from ingest.readers import iter_articles

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED = SHARED / "corpus" / "seed" / "armenia-and-russia-its-complicated.txt"
NEWS = SHARED / "corpus" / "news-2023q4.jsonl"


def paragraphs(cleaned: Cleaned) -> list[str]:
    return cleaned.text.split("\n\n") if cleaned.text else []


def check_invariants(source: str, cleaned: Cleaned) -> None:
    """Whitespace is normalised, captions index paragraphs, and words are only ever removed, never changed."""
    text = cleaned.text
    assert text == text.strip()
    assert "\n\n\n" not in text and "\r" not in text and "\t" not in text
    assert all(p and p == p.strip() and "  " not in p and "\n" not in p for p in paragraphs(cleaned))
    starts = {0} | {i + 2 for i in range(len(text)) if text.startswith("\n\n", i)}
    for start, end in cleaned.captions:
        assert start in starts and 0 <= start < end <= len(text)
        assert end == len(text) or text.startswith("\n\n", end)
    assert cleaned.captions == sorted(cleaned.captions)
    # every output word is an input word, in order
    source_words = iter(unicodedata.normalize("NFC", source).split())
    for word in text.split():
        assert any(word == candidate for candidate in source_words), word


# ------------------------------------------------------------------------------------------- the seed


@pytest.fixture(scope="module")
def seed() -> tuple[str, Cleaned]:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not present")
    [article] = list(iter_articles([SEED]))
    return article.text, clean(article.text)


def test_seed_keeps_the_article(seed: tuple[str, Cleaned]) -> None:
    source, cleaned = seed
    paras = paragraphs(cleaned)
    assert paras[0].startswith("Russia and Armenia have been friends for centuries.")
    assert "Pashinyan said during an address to the nation last weekend." in cleaned.text
    assert "The message was clear: Armenia can no longer trust Russia" in cleaned.text
    assert paras[-2].endswith("you can't blame the Armenians for reassessing.")
    # the author's bio line is the last paragraph
    assert paras[-1] == (
        "Daniel R. DePetris is a fellow at Defense Priorities and a syndicated foreign affairs columnist "
        "at the Chicago Tribune."
    )
    # 10 body paragraphs, 2 caption paragraphs, the bio
    assert len(paras) == 13
    check_invariants(source, cleaned)


def test_seed_caption_is_kept_without_its_credit(seed: tuple[str, Cleaned]) -> None:
    _, cleaned = seed
    captions = [cleaned.text[start:end] for start, end in cleaned.captions]
    assert captions == [
        "Vladimir Putin meets with Nikol Pashinyan",
        "Russian President Vladimir Putin meets with Armenian Prime Minister Nikol Pashinyan in Sochi on June 9, 2023.",
    ]
    assert "SITDIKOV" not in cleaned.text and "Getty" not in cleaned.text
    assert "RAMIL SITDIKOV/SPUTNIK/AFP via Getty Images" in cleaned.dropped


def test_seed_drops_the_boilerplate(seed: tuple[str, Cleaned]) -> None:
    _, cleaned = seed
    for gone in (
        "About the writer",
        "To read how Newsweek uses AI",
        "Newsweek cover",
        "delivered to your door",
        "Diverse audio opinions",
        "ad-free browsing",
        "Comment on articles",
        "app updates on-the-go",
        "is committed to challenging",
        "The views expressed",
        "Uncommon Knowledge",
    ):
        assert gone not in cleaned.text, gone
        assert any(gone in dropped for dropped in cleaned.dropped), gone
    tag_line = (
        "Newsweek is committed to challenging conventional wisdom and finding connections in the search "
        "for common ground."
    )
    assert cleaned.dropped.count(tag_line) == 2
    assert cleaned.dropped.count("Newsweek cover") == 2
    assert "The views expressed in this article are the writer's own." in cleaned.dropped
    assert "To read how Newsweek uses AI as a newsroom tool, Click here." in cleaned.dropped
    assert len([d for d in cleaned.dropped if d.startswith("•")]) == 9


# ------------------------------------------------------------------------------------------- the corpus


def test_first_300_corpus_records_lose_little() -> None:
    if not NEWS.exists():
        pytest.skip(f"{NEWS} is not present")
    with NEWS.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in islice(handle, 300)]
    assert len(records) == 300
    for record in records:
        source = record["text"]
        cleaned = clean(source)
        kept = len("".join(cleaned.text.split()))
        total = len("".join(source.split()))
        assert kept >= 0.7 * total, (record["id"], kept, total, cleaned.dropped[:10])
        check_invariants(source, cleaned)


# ------------------------------------------------------------------------------------------- rules


def test_whitespace_is_normalised_and_words_are_untouched() -> None:
    source = "  First\tline   of\t\ttext.  \r\nSecond line.\r\n\r\n\r\n\n   Third  paragraph ends here.\n\n"
    cleaned = clean(source)
    assert cleaned.text == "First line of text.\n\nSecond line.\n\nThird paragraph ends here."
    assert cleaned.dropped == [] and cleaned.captions == []
    decomposed = clean("Cafe\u0301 society.")
    assert decomposed.text == "Café society."


def test_a_line_broken_mid_sentence_is_rejoined() -> None:
    cleaned = clean("The council said it had about $7\nmillion left for repairs.\nNext sentence.")
    assert cleaned.text == "The council said it had about $7 million left for repairs.\n\nNext sentence."


def test_photo_credits_are_removed_and_captions_recorded() -> None:
    source = "\n\n".join(
        [
            "The mayor spoke for an hour about the budget and the new library.",
            "Mayor Jane Holt speaks at City Hall on May 2. (AP Photo/Sam Rivera)",
            "Crowds gather outside the stadium. Jonathan Hale/The Daily Star/Getty Images",
            "Getty Images",
            "Photo: Maria Lopez",
            "Credit: City of Ashford",
            "Volunteers clear the trail on Sunday. Photo: Lee Chan/Reuters",
            "A boat at the dock. KIM PARK/AFP via Getty Images A second caption follows here. Ana Diaz/AP",
            "The budget passed 6-1.",
        ]
    )
    cleaned = clean(source)
    captions = [cleaned.text[start:end] for start, end in cleaned.captions]
    assert captions == [
        "Mayor Jane Holt speaks at City Hall on May 2.",
        "Crowds gather outside the stadium.",
        "Volunteers clear the trail on Sunday.",
        "A boat at the dock.",
        "A second caption follows here.",
    ]
    for credit in (
        "(AP Photo/Sam Rivera)",
        "Jonathan Hale/The Daily Star/Getty Images",
        "Getty Images",
        "Photo: Maria Lopez",
        "Credit: City of Ashford",
        "Photo: Lee Chan/Reuters",
        "KIM PARK/AFP via Getty Images",
        "Ana Diaz/AP",
    ):
        assert credit in cleaned.dropped, credit
    assert paragraphs(cleaned)[0] == "The mayor spoke for an hour about the budget and the new library."
    assert paragraphs(cleaned)[-1] == "The budget passed 6-1."
    check_invariants(source, cleaned)


def test_caption_title_line_joins_the_caption() -> None:
    source = (
        "Body paragraph before the picture ends here.\n\n"
        "Harbor at dawn\nFishing boats leave Harbor City at dawn on Monday. Ana Diaz/Reuters\n\n"
        "Body paragraph after."
    )
    cleaned = clean(source)
    assert [cleaned.text[s:e] for s, e in cleaned.captions] == [
        "Harbor at dawn",
        "Fishing boats leave Harbor City at dawn on Monday.",
    ]


def test_credit_on_its_own_line_makes_the_line_above_a_caption() -> None:
    source = (
        "Story text here, long enough.\n\nA crane lifts the bridge deck into place.\nLee Chan/Reuters\n\nMore story."
    )
    cleaned = clean(source)
    assert [cleaned.text[s:e] for s, e in cleaned.captions] == ["A crane lifts the bridge deck into place."]
    assert cleaned.dropped == ["Lee Chan/Reuters"]


def test_agency_names_in_prose_are_not_credits() -> None:
    source = (
        "A Reuters/Ipsos poll and an AP/NORC survey found support fell, Getty Images said in a statement. "
        "The figures were obtained via AP."
    )
    cleaned = clean(source)
    assert cleaned.text == source
    assert cleaned.dropped == [] and cleaned.captions == []


def test_promos_links_and_notices_are_dropped() -> None:
    body = "The school board approved the new calendar on Tuesday after a short debate about snow days."
    lines = [
        body,
        "Advertisement",
        "Sign up for our free Morning Briefing newsletter to get the news in your inbox.",
        "Read more:",
        "Related: Board delays vote on bus routes",
        "More:Superintendent search enters final round",
        "Share this story on Facebook",
        "___",
        "To read how the Gazette uses AI as a newsroom tool, click here.",
        "The views expressed in this column are the author's own.",
        "About the author",
        "Dana Ruiz is a reporter at the Ashford Gazette.",
    ]
    cleaned = clean("\n\n".join(lines))
    assert paragraphs(cleaned) == [body, "Dana Ruiz is a reporter at the Ashford Gazette."]
    assert cleaned.dropped == lines[1:-1]


def test_promo_sentences_leave_the_rest_of_a_paragraph() -> None:
    source = (
        "Alex Moreno is a columnist for the Ledger. Sign up for our weekly opinion newsletter. "
        "The opinions expressed in this commentary are his own."
    )
    cleaned = clean(source)
    assert cleaned.text == "Alex Moreno is a columnist for the Ledger."
    assert cleaned.dropped == [
        "Sign up for our weekly opinion newsletter.",
        "The opinions expressed in this commentary are his own.",
    ]


def test_long_article_paragraphs_survive_promo_words() -> None:
    paragraph = (
        "Subscribers to the county's water service will pay more next year. "
        "Officials said readers can read more in the budget document, which the council will "
        "advertise at its Related Services hearing, and the newsletter published by the utility "
        "lists the new rates. " * 3
    ).strip()
    cleaned = clean(paragraph)
    assert cleaned.text == paragraph and cleaned.dropped == []


def test_subscription_block_with_bullets_is_dropped() -> None:
    source = "\n".join(
        [
            "The last paragraph of the story ends with a full stop.",
            "",
            "Gazette cover",
            "  • Gazette magazine delivered to your door",
            "  • Unlimited digital access",
            "  • Comment on articles",
            "",
            "A list the story really needs:",
            "• Bring water",
            "• Wear boots",
        ]
    )
    cleaned = clean(source)
    assert paragraphs(cleaned) == [
        "The last paragraph of the story ends with a full stop.",
        "A list the story really needs:",
        "• Bring water",
        "• Wear boots",
    ]
    assert cleaned.dropped[0] == "Gazette cover" and len(cleaned.dropped) == 4


def test_repeated_paragraphs() -> None:
    story = "The river rose two metres overnight and flooded the lower town, officials said on Friday morning."
    long_repeat = "Emergency shelters are open at the high school and the library. " * 4
    lines = [
        story,
        long_repeat.strip(),
        "Party: Democratic",
        "Some more text about the flood and the people who were moved out of their homes in the night.",
        "Party: Democratic",
        long_repeat.strip(),
        "Wire Desk",
        "The Gazette is committed to reporting that holds the powerful to account in every town.",
        "The Gazette is committed to reporting that holds the powerful to account in every town.",
    ]
    cleaned = clean("\n\n".join(lines))
    paras = paragraphs(cleaned)
    assert paras.count(long_repeat.strip()) == 1  # a long repeat keeps its first copy
    assert paras.count("Party: Democratic") == 2  # short repeated labels are content
    assert not any("is committed to" in p for p in paras)  # a tag line goes entirely
    assert "Wire Desk" not in paras  # the section label standing before it goes too
    assert cleaned.dropped == [long_repeat.strip(), "Wire Desk", lines[-1], lines[-1]]


def test_repeated_bio_line_keeps_one_copy_only_if_long_enough() -> None:
    bio = "Col. Wayne Dillingham is retired from the Air Force and lives in Murfreesboro with his family."
    cleaned = clean("\n\n".join(["A long opinion column about veterans' benefits and the new clinic." * 5, bio, bio]))
    assert bio in cleaned.text


# ------------------------------------------------------------------------------------------- robustness


def test_empty_and_blank_input() -> None:
    for source in ("", "   ", "\n\n\n", "\r\n\t\r\n"):
        cleaned = clean(source)
        assert cleaned == Cleaned(text="", captions=[], dropped=[])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_never_raises_on_arbitrary_unicode(source: str) -> None:
    check_invariants(source, clean(source))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "Getty Images",
                "Jane Doe/AP",
                " via Getty Images",
                "Photo: X",
                "(AP Photo/Y)",
                "• ad-free",
                "Sign up here.",
                "Read more:",
                "is committed to",
                "Courtesy of Z",
                "/",
                ".",
                " ",
                "\n",
                "\n\n",
                "Word",
                "word",
                "Dr.",
                "A.",
                "Reuters",
                "“",
                ":",
            ]
        ),
        max_size=60,
    ).map("".join)
)
def test_never_raises_on_boilerplate_fragments(source: str) -> None:
    check_invariants(source, clean(source))


def test_huge_input_is_cleaned_quickly() -> None:
    paragraph = "The committee met on Tuesday. Jane Doe/AP Members discussed the budget. " * 20
    source = "\n\n".join([paragraph] * 2000 + ["x" * 2_000_000])  # about 5 MB
    started = time.perf_counter()
    cleaned = clean(source)
    assert time.perf_counter() - started < 30
    assert cleaned.text.endswith("x" * 1000)
    assert "Jane Doe/AP" not in cleaned.text
