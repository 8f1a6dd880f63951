"""What a question says about time and publication, turned into filters relative to ``as_of``.

"yesterday", "today", "this/last week", "this/last month", "this/last year", "in October [2023]",
"in 2022" become a published-date range; a run of capitalised words naming an indexed publication
("CNN", "USA Today", "The Week") becomes a source filter. Everything is relative to the moment of the
question (``as_of``), never to the wall clock. Ranges are clamped to the calendar (``date.min`` to
``date.max``): "last year" asked on 0001-01-01 is 0001-01-01, never an ``OverflowError``.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))

_IN_MONTH = re.compile(rf"\b(?:in|during|since|throughout|of)\s+({_MONTH_RE})\.?(?:\s+(\d{{4}}))?\b", re.I)
_IN_YEAR = re.compile(r"\b(?:in|during)\s+((?:19|20)\d{2})\b", re.I)
_RELATIVE = re.compile(
    r"\b(yesterday|today|tonight|this\s+(?:week|month|year)|last\s+(?:week|month|year)|"
    r"past\s+(?:week|month|year)|recently|latest)\b",
    re.I,
)
_CAPITALISED_RUN = re.compile(r"\b(?:[A-Z][A-Za-z&'.]*)(?:\s+[A-Z][A-Za-z&'.]*){0,2}")


@dataclass(frozen=True)
class TimeRange:
    start: date
    end: date
    phrase: str
    recency: bool = False  # a vague "recently" / "latest": a preference, not a filter


def _shift(day: date, days: int) -> date:
    """``day + days``, clamped to the calendar (0001-01-01 .. 9999-12-31)."""
    ordinal = day.toordinal() + days
    return date.fromordinal(min(max(ordinal, date.min.toordinal()), date.max.toordinal()))


def _clamp_year(year: int) -> int:
    return min(max(year, date.min.year), date.max.year)


def month_range(year: int, month: int) -> tuple[date, date]:
    """The first and last day of a month; a year outside 1..9999 is clamped."""
    year = _clamp_year(year)
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def _range(start: date, end: date, phrase: str, recency: bool = False) -> TimeRange:
    return TimeRange(min(start, end), max(start, end), phrase, recency)


def _in_name(text: str, position: int) -> bool:
    """True for a capitalised word inside a name ("USA Today"), not at the start of the question."""
    return text[position].isupper() and position > 0 and bool(re.search(r"[A-Z][\w.&']*\s+$", text[:position]))


def parse_time(question: str, as_of: date) -> TimeRange | None:
    """The published-date range a question refers to, relative to ``as_of``; None when it names none."""
    match = next((m for m in _RELATIVE.finditer(question) if not _in_name(question, m.start())), None)
    if match:
        phrase = " ".join(match.group(1).lower().split())
        if phrase == "yesterday":
            day = _shift(as_of, -1)
            return _range(_shift(day, -1), day, phrase)  # reported that day or the next morning
        if phrase in ("today", "tonight"):
            return _range(_shift(as_of, -1), as_of, phrase)
        if phrase in ("this week", "past week"):
            return _range(_shift(as_of, -7), as_of, phrase)
        if phrase == "last week":
            monday = _shift(as_of, -as_of.weekday())
            return _range(_shift(monday, -7), _shift(monday, -1), phrase)
        if phrase in ("this month", "past month"):
            return _range(_shift(as_of, -31), as_of, phrase)
        if phrase == "last month":
            previous = _shift(as_of.replace(day=1), -1)
            return _range(*month_range(previous.year, previous.month), phrase)
        if phrase in ("this year", "past year"):
            return _range(date(as_of.year, 1, 1), as_of, phrase)
        if phrase == "last year":
            year = _clamp_year(as_of.year - 1)
            return _range(date(year, 1, 1), date(year, 12, 31), phrase)
        return _range(_shift(as_of, -30), as_of, phrase, recency=True)
    match = _IN_MONTH.search(question)
    if match:
        month = _MONTHS[match.group(1).lower()]
        if match.group(2):
            year = int(match.group(2))
        else:  # the latest such month not after as_of
            year = as_of.year if month <= as_of.month else as_of.year - 1
        start, end = month_range(year, month)
        return _range(start, min(_shift(end, 1), as_of) if start <= as_of else end, match.group(0))
    match = _IN_YEAR.search(question)
    if match:
        year = _clamp_year(int(match.group(1)))
        return _range(date(year, 1, 1), date(year, 12, 31), match.group(0))
    return None


def source_label(domain: str) -> str:
    """'www.usatoday.com' -> 'usatoday'; 'theweek.co.uk' -> 'theweek'."""
    host = domain.lower().removeprefix("www.")
    return host.split(".")[0] if "." in host else host


def parse_sources(question: str, known_sources: list[str]) -> list[str]:
    """Indexed publications named in the question by a run of capitalised words ("USA Today" -> usatoday.com)."""
    labels: dict[str, list[str]] = {}
    for source in known_sources:
        labels.setdefault(source_label(source), []).append(source)
    found: list[str] = []
    for match in _CAPITALISED_RUN.finditer(question):
        words = match.group(0).split()
        for i in range(len(words)):
            for j in range(i + 1, len(words) + 1):
                key = re.sub(r"[^a-z0-9]", "", "".join(words[i:j]).lower())
                if len(key) >= 3 and key in labels:
                    found.extend(s for s in labels[key] if s not in found)
    return found
