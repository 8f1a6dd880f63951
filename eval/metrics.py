"""Evaluation metrics as pure functions over plain values (no I/O, no engine).

Conventions:
* Strings are matched case-insensitively with runs of whitespace collapsed (``normalize``).
* A retrieved passage is a *hit* for a turn when it contains one of the turn's evidence strings, or, for a
  turn without evidence, one of its ``answer_any`` strings (``targets``).
* Ranks are 1-based; ``None`` means "not found". Per-turn figures are ``None`` where the figure does not
  apply (e.g. retrieval figures of a question the corpus cannot answer); ``mean`` skips those, and is
  ``None`` when nothing applies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from service.answering.schemas import Source

MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")

ArticleText = Callable[[str], str | None]


# ------------------------------------------------------------------------------------------ matching


def normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def contains_any(text: str, needles: Iterable[str]) -> bool:
    haystack = normalize(text)
    return any(normalize(needle) in haystack for needle in needles if needle.strip())


def targets(evidence: Sequence[str], answer_any: Sequence[str]) -> list[str]:
    """What a passage must contain to be a hit: the evidence strings, else the answer strings."""
    return list(evidence) if evidence else list(answer_any)


# ---------------------------------------------------------------------------------------- retrieval


def first_hit_rank(passages: Sequence[str], evidence: Sequence[str], answer_any: Sequence[str]) -> int | None:
    """1-based rank of the first passage that is a hit, or None (also when there is nothing to look for)."""
    wanted = targets(evidence, answer_any)
    if not wanted:
        return None
    for rank, text in enumerate(passages, start=1):
        if contains_any(text, wanted):
            return rank
    return None


def hit_at(rank: int | None, k: int) -> float:
    return 1.0 if rank is not None and rank <= k else 0.0


def reciprocal_rank(rank: int | None, k: int = 10) -> float:
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def hits_curve(ranks: Sequence[int | None], k: int) -> list[float]:
    """Hits@1..Hits@k over the given first-hit ranks (one per answerable turn); empty without ranks."""
    if not ranks:
        return []
    return [sum(hit_at(rank, n) for rank in ranks) / len(ranks) for n in range(1, k + 1)]


# ---------------------------------------------------------------------------------------- citations


def citation_markers(answer: str) -> list[int]:
    """Source numbers cited in the answer text, in order of appearance (``[2]``, ``[1, 3]``)."""
    numbers: list[int] = []
    for match in MARKER.finditer(answer):
        numbers.extend(int(part) for part in match.group(1).split(",") if len(part.strip()) <= 6)
    return numbers


def strip_markers(answer: str) -> str:
    return MARKER.sub("", answer)


def cited_sources(answer: str, sources: Sequence[Source]) -> list[Source]:
    """The distinct sources the answer's markers resolve to, in order of first citation."""
    by_number = {source.n: source for source in sources}
    cited: list[Source] = []
    for number in citation_markers(answer):
        source = by_number.get(number)
        if source is not None and source not in cited:
            cited.append(source)
    return cited


@dataclass
class CitationCheck:
    """Whether every ``[n]`` marker resolves to a source whose every quote is the article text at its span."""

    markers: int = 0
    valid: bool | None = None  # None: nothing to check (no markers in an abstention)
    problems: list[str] = field(default_factory=list)


def check_citations(
    answer: str, sources: Sequence[Source], article_text: ArticleText, abstained: bool = False
) -> CitationCheck:
    """Citation validity of one answer.

    An answer that is not an abstention but has no marker at all is invalid (an uncited claim); an
    abstention without markers has nothing to check (``valid=None``).
    """
    numbers = citation_markers(answer)
    check = CitationCheck(markers=len(numbers))
    if not numbers:
        if not abstained:
            check.valid = False
            check.problems.append("answer has no citation markers")
        return check
    by_number = {source.n: source for source in sources}
    texts: dict[str, str | None] = {}
    for number in dict.fromkeys(numbers):
        source = by_number.get(number)
        if source is None:
            check.problems.append(f"[{number}] does not resolve to a returned source")
            continue
        if not source.quotes:
            check.problems.append(f"[{number}] has no quotes")
            continue
        if source.article_id not in texts:
            texts[source.article_id] = article_text(source.article_id)
        text = texts[source.article_id]
        if text is None:
            check.problems.append(f"[{number}] article {source.article_id} not found")
            continue
        for quote in source.quotes:
            if not 0 <= quote.start <= quote.end <= len(text) or text[quote.start : quote.end] != quote.text:
                check.problems.append(
                    f"[{number}] quote at {quote.start}:{quote.end} is not the article text there: {quote.text[:60]!r}"
                )
    check.valid = not check.problems
    return check


def source_supports(source: Source, wanted: Sequence[str]) -> bool:
    """A source supports the expected answer when one of its quotes or its passage contains a wanted string."""
    return any(contains_any(text, wanted) for text in [*(q.text for q in source.quotes), source.passage])


def citation_support(cited: Sequence[Source], evidence: Sequence[str], answer_any: Sequence[str]) -> float | None:
    """Share of the cited sources that contain an evidence or answer string; None when nothing is cited.

    With nothing to look for (a question the corpus cannot answer) every cited source is unsupported.
    """
    if not cited:
        return None
    wanted = [*evidence, *answer_any]
    return sum(source_supports(source, wanted) for source in cited) / len(cited)


def answer_supported(
    cited: Sequence[Source], evidence: Sequence[str], answer_any: Sequence[str], abstained: bool
) -> bool | None:
    """Answer-level support: the answer cites at least one source containing an evidence or answer string.

    None for a question without expected strings; an abstention is unsupported.
    """
    wanted = [*evidence, *answer_any]
    if not wanted:
        return None
    return not abstained and any(source_supports(source, wanted) for source in cited)


# ------------------------------------------------------------------------------------------- answers


def answer_correct(answer: str, answer_any: Sequence[str], abstained: bool, unanswerable: bool) -> bool | None:
    """The right response: an answer containing one of ``answer_any``, or an abstention when unanswerable.

    None for an answerable question without answer strings (nothing to compare against).
    """
    if unanswerable:
        return abstained
    if not answer_any:
        return None
    return not abstained and contains_any(strip_markers(answer), answer_any)


# Words that do not make a short answer by themselves: a short answer made only of these (and of one-character
# tokens) matches no expected string by being inside it ("the" in "The Hague", "of" in "Bank of America").
SHORT_STOPWORDS = frozenset({"a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "for", "by", "with", "from"})
_TOKEN = re.compile(r"[^\W_]+")  # a run of letters and digits


def _inside_as_words(short: str, expected: str) -> bool:
    """``short`` occurs in ``expected`` bounded on both sides: the neighbouring characters are not letters or
    digits, and a number is not cut out of a longer one (a ``.`` or ``,`` between two digits joins them, so
    "900" is not inside "1,900" nor "3" inside "$3.3 billion")."""
    start = expected.find(short)
    while start != -1:
        end = start + len(short)
        before = expected[start - 1] if start > 0 else ""
        after = expected[end] if end < len(expected) else ""
        joined_before = before in ".," and start > 1 and expected[start - 2].isdigit() and short[0].isdigit()
        joined_after = after in ".," and end + 1 < len(expected) and expected[end + 1].isdigit() and short[-1].isdigit()
        if not before.isalnum() and not after.isalnum() and not joined_before and not joined_after:
            return True
        start = expected.find(short, start + 1)
    return False


def short_answer_correct(
    short: str | None, answer_any: Sequence[str], abstained: bool, unanswerable: bool
) -> bool | None:
    """Whether the short answer (the few words shown first, "Answer: 371 days [1]") is right.

    None when there is nothing to judge: a question the corpus cannot answer, an abstention, no answer strings,
    or no short answer given. Otherwise, with both sides normalized (``normalize``: case and runs of whitespace
    ignored), True when either

    * the short answer contains one of ``answer_any`` ("371 days" for "371"; ``contains_any``), or
    * one of ``answer_any`` contains the short answer as whole words ("Kimmel" for "Jimmy Kimmel", "371" for
      "371 days"): bounded on both sides by the string's ends or by characters that are not letters or digits,
      without cutting a number out of a longer one ("3" is not inside "$3.3 billion", "900" not inside "1,900"),
      and only when the short answer holds at least one token (a run of letters and digits) of two or more
      characters that is not one of ``SHORT_STOPWORDS`` (a, an, the, of, and, or, in, on, at, to, for, by, with,
      from), so that "the" or "3" alone matches nothing that way;

    else False.
    """
    wanted = [normalize(text) for text in answer_any if text.strip()]
    if unanswerable or abstained or not wanted or short is None or not short.strip():
        return None
    if contains_any(short, wanted):
        return True
    said = normalize(short)
    if not any(len(token) >= 2 and token not in SHORT_STOPWORDS for token in _TOKEN.findall(said)):
        return False
    return any(_inside_as_words(said, text) for text in wanted)


def short_answer_coverage(
    short_given: Sequence[bool], correct: Sequence[bool | None], unanswerable: Sequence[bool]
) -> float | None:
    """Short-answer coverage: of the turns on questions the corpus can answer whose answer is right
    (``answer_correct`` True, so answered, not abstained), the share that carried a short answer at all; None
    without such turns.

    Questions that are not factual (why, how) get no short answer by design, so on a mixed question set this
    stays below 1 even when every factual answer leads with one.
    """
    if not len(short_given) == len(correct) == len(unanswerable):
        raise ValueError("short_given, correct and unanswerable differ in length")
    return mean(g for g, c, u in zip(short_given, correct, unanswerable, strict=True) if c and not u)


def answered_precision(correct: Sequence[bool | None], abstained: Sequence[bool]) -> float | None:
    """Of the turns answered (not abstained), the share answered right; an answer to a question the corpus
    cannot answer is wrong (``answer_correct`` is False there). Turns with nothing to compare (None) are skipped;
    None when nothing was answered."""
    if len(correct) != len(abstained):
        raise ValueError("correct and abstained differ in length")
    return mean(c for c, a in zip(correct, abstained, strict=True) if not a)


@dataclass
class Abstention:
    precision: float | None  # of the abstentions, the share on questions the corpus cannot answer
    recall: float | None  # of the questions the corpus cannot answer, the share abstained on


def abstention(abstained: Sequence[bool], unanswerable: Sequence[bool]) -> Abstention:
    if len(abstained) != len(unanswerable):
        raise ValueError("abstained and unanswerable differ in length")
    both = sum(a and u for a, u in zip(abstained, unanswerable, strict=True))
    n_abstained, n_unanswerable = sum(abstained), sum(unanswerable)
    return Abstention(
        precision=both / n_abstained if n_abstained else None,
        recall=both / n_unanswerable if n_unanswerable else None,
    )


# --------------------------------------------------------------------------------------- aggregation


def mean(values: Iterable[float | bool | None]) -> float | None:
    present = [float(value) for value in values if value is not None]
    return sum(present) / len(present) if present else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
