"""The project's own development question sets over the shared news corpus.

``eval/questions/news.jsonl`` holds 3-turn news conversations (a standalone first question, then
follow-ups with their written standalone form) plus unanswerable single questions;
``eval/questions/news-switch.jsonl`` holds conversations whose later turn switches topic. The format
checks run everywhere; the evidence checks need ``../shared`` and skip cleanly without it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from eval.questions import QuestionItem, Turn, load_questions

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "eval" / "questions"
NEWS = QUESTIONS / "news.jsonl"
SWITCH = QUESTIONS / "news-switch.jsonl"
SEED = QUESTIONS / "seed.jsonl"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus" / "news-2023q4.jsonl"

MIN_CONVERSATIONS = 32
MIN_UNANSWERABLE = 12
MIN_SWITCHES = 12


@dataclass(frozen=True)
class Article:
    id: str
    published: dt.date
    text: str


@pytest.fixture(scope="module")
def corpus() -> list[Article]:
    if not CORPUS.is_file():
        pytest.skip(f"{CORPUS} is absent (the shared data lives beside the checkout)")
    articles = []
    with CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                data = json.loads(line)
                articles.append(Article(data["id"], dt.date.fromisoformat(data["published"][:10]), data["text"]))
    return articles


class Finder:
    """Which articles hold a phrase; each phrase is looked up in the corpus once."""

    def __init__(self, articles: list[Article]) -> None:
        self.articles = articles
        self.by_id = {article.id: article for article in articles}
        self._found: dict[str, frozenset[str]] = {}

    def articles_with(self, phrase: str) -> frozenset[str]:
        if phrase not in self._found:
            self._found[phrase] = frozenset(article.id for article in self.articles if phrase in article.text)
        return self._found[phrase]

    def holders(self, turn: Turn) -> set[str]:
        """Ids of the articles that contain every evidence string of the turn."""
        found: set[str] | None = None
        for phrase in turn.evidence:
            ids = set(self.articles_with(phrase))
            found = ids if found is None else found & ids
        return found or set()


@pytest.fixture(scope="module")
def finder(corpus: list[Article]) -> Finder:
    return Finder(corpus)


@pytest.fixture(scope="module")
def news() -> list[QuestionItem]:
    return load_questions(NEWS)


@pytest.fixture(scope="module")
def switches() -> list[QuestionItem]:
    return load_questions(SWITCH)


def answerable_turns(items: list[QuestionItem]) -> list[tuple[QuestionItem, int, Turn]]:
    return [(item, index, turn) for item in items if not item.unanswerable for index, turn in enumerate(item.turns)]


# ---------------------------------------------------------------------------------------------- format


def test_files_load_through_the_reader(news: list[QuestionItem], switches: list[QuestionItem]) -> None:
    seed = load_questions(SEED)
    assert seed and all(item.id.startswith("seed-") for item in seed)
    assert news and switches
    assert not {item.id for item in news} & {item.id for item in switches}
    assert all(item.date is not None for item in news + switches)


def test_news_counts_and_shape(news: list[QuestionItem]) -> None:
    conversations = [item for item in news if not item.unanswerable]
    unanswerable = [item for item in news if item.unanswerable]
    assert len(conversations) >= MIN_CONVERSATIONS
    assert len(unanswerable) >= MIN_UNANSWERABLE
    assert all(len(item.turns) == 3 for item in conversations)
    assert all(len(item.turns) == 1 and not item.turns[0].evidence for item in unanswerable)
    assert not any(turn.topic_switch for item in news for turn in item.turns)


def test_switch_counts_and_marks(switches: list[QuestionItem]) -> None:
    marked = [(index, turn) for item in switches for index, turn in enumerate(item.turns) if turn.topic_switch]
    assert len(marked) >= MIN_SWITCHES
    assert all(sum(turn.topic_switch for turn in item.turns) == 1 for item in switches)
    assert all(index >= 1 and turn.standalone == turn.question for index, turn in marked)


@pytest.mark.parametrize("path", [NEWS, SWITCH], ids=["news", "switch"])
def test_every_answerable_turn_is_complete(path: Path) -> None:
    for item, index, turn in answerable_turns(load_questions(path)):
        where = f"{item.id} turn {index}"
        assert 1 <= len(turn.evidence) <= 2, where
        assert 1 <= len(turn.answer_any) <= 3, where
        if index >= 1 and not turn.topic_switch:
            assert turn.standalone and turn.standalone != turn.question, f"{where}: follow-up without standalone form"
        if index == 0:
            assert turn.standalone is None or turn.standalone == turn.question, where


# ---------------------------------------------------------------------------------------------- evidence


@pytest.mark.parametrize("path", [NEWS, SWITCH], ids=["news", "switch"])
def test_evidence_is_exact_article_text(finder: Finder, path: Path) -> None:
    missing = [
        f"{item.id} turn {index}: {phrase!r}"
        for item, index, turn in answerable_turns(load_questions(path))
        for phrase in turn.evidence
        if not finder.articles_with(phrase)
    ]
    assert not missing, "evidence not found in the corpus:\n" + "\n".join(missing)


@pytest.mark.parametrize("path", [NEWS, SWITCH], ids=["news", "switch"])
def test_answers_lie_in_the_evidence(finder: Finder, path: Path) -> None:
    wrong = []
    for item, index, turn in answerable_turns(load_questions(path)):
        articles = [finder.by_id[article_id].text for article_id in finder.holders(turn)]
        for answer in turn.answer_any:
            if not any(answer in phrase for phrase in turn.evidence) and not any(answer in text for text in articles):
                wrong.append(f"{item.id} turn {index}: {answer!r}")
    assert not wrong, "answer_any outside the evidence:\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", [NEWS, SWITCH], ids=["news", "switch"])
def test_evidence_is_visible_on_the_question_date(finder: Finder, path: Path) -> None:
    """The service hides articles published after ``date``; an answering article must be visible then."""
    late = [
        f"{item.id} turn {index}"
        for item, index, turn in answerable_turns(load_questions(path))
        if item.date is not None and not any(finder.by_id[i].published <= item.date for i in finder.holders(turn))
    ]
    assert not late, "no answering article published by the question date:\n" + "\n".join(late)


def test_news_conversations_stay_on_one_article(finder: Finder, news: list[QuestionItem]) -> None:
    for item in news:
        if item.unanswerable:
            continue
        shared = set.intersection(*(finder.holders(turn) for turn in item.turns))
        assert shared, f"{item.id}: the turns are not answered by one article"


def test_switch_turns_change_article(finder: Finder, switches: list[QuestionItem]) -> None:
    for item in switches:
        for index, turn in enumerate(item.turns):
            if turn.topic_switch:
                assert not finder.holders(turn) & finder.holders(item.turns[index - 1]), item.id
