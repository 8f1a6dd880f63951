"""What kind of answer a question asks for, and which named-entity labels can be that answer.

The kind comes from the question's wh-phrase ("how many" -> number, "when" -> date, "who" -> person,
"which company" -> organisation); entity labels are spaCy's OntoNotes labels, as ``reading.entities``
finds them in candidate sentences.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Entity = tuple[int, int, str]  # start, end (offsets in the sentence), spaCy label

KINDS = ("number", "age", "date", "person", "place", "organisation", "name", "thing", "reason", "manner")
FACTUAL = frozenset({"number", "age", "date", "person", "place", "organisation", "name"})

# Best first: a "how many" answer is a CARDINAL before it is a DATE ("371" before "this week").
LABELS: dict[str, tuple[str, ...]] = {
    "number": ("CARDINAL", "QUANTITY", "MONEY", "PERCENT", "DATE", "TIME", "ORDINAL"),
    "age": ("DATE", "CARDINAL"),
    "date": ("DATE", "TIME"),
    "person": ("PERSON", "ORG"),
    "place": ("GPE", "LOC", "FAC"),
    "organisation": ("ORG", "NORP", "PERSON", "GPE"),
    "name": ("PERSON", "ORG", "WORK_OF_ART", "EVENT", "PRODUCT", "FAC", "GPE", "LOC", "NORP", "LAW"),
}

_UNITS = frozenset(
    "second seconds minute minutes hour hours day days week weeks month months year years decade decades".split()
)


_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand dozen".split()
)
_AGE = re.compile(r"\b\d{1,3}[- ]years?[- ]old\b|\bage[sd]? (?:of )?\d{1,3}\b", re.I)
# A dateline ("WASHINGTON -", "LONDON (AP) —") names where the story was filed, not what it reports.
_DATELINE = re.compile(r"^[A-Z][A-Z.,' ]*[A-Z.](?: \([^)]{1,40}\))?\s*[-\u2013\u2014]")


def matches_kind(kind: str, label: str, text: str) -> bool:
    """Whether an entity (spaCy label, text) can answer a question of ``kind``. A number is a count, amount or
    share, or a duration with its number ("371 days", "six weeks", "44-day"); a month name or a bare year is
    not a number. An age is a bare number up to 120 ("Kiptum, 23,", whether labelled CARDINAL or DATE) or says so ("the
    47-year-old")."""
    if label not in LABELS.get(kind, ()):
        return False
    if kind == "number" and label in ("DATE", "TIME"):
        words = set(re.split(r"[\s-]+", text.lower()))
        return any(w.isdigit() or w in _NUMBER_WORDS for w in words) and bool(_UNITS & words)
    if kind == "age":  # spaCy's small model often labels the bare age of "Fosse, 64," a DATE
        return (label == "DATE" and bool(_AGE.search(text))) or (text.isdigit() and 0 < int(text) <= 120)
    return True


def answer_entities(kind: str, question: str, sentence: str, found: Sequence[Entity]) -> list[Entity]:
    """The entities of ``sentence`` that can answer a ``kind`` question: of a matching kind, not named in the
    question already, and not in the sentence's dateline."""
    asked = question.casefold()
    dateline = _DATELINE.match(sentence)
    after = dateline.end() if dateline else 0
    # a duration ("44 days") answers "how long" or "how many days", not "how many refugees"
    durations = kind != "number" or bool((_UNITS | {"long"}) & set(_WORD.findall(asked)))
    return [
        e
        for e in found
        if e[0] >= after
        and matches_kind(kind, e[2], sentence[e[0] : e[1]])
        and (durations or e[2] not in ("DATE", "TIME"))
        and sentence[e[0] : e[1]].casefold() not in asked
        and (kind != "age" or _age_of_asked(e, sentence, asked, found))
    ]


_NAMES = ("PERSON", "ORG", "GPE")  # the small model often labels a surname ORG or GPE ("Butler, 44,")


def _age_of_asked(age: Entity, sentence: str, asked: str, found: Sequence[Entity]) -> bool:
    """Whether an age can be the asked person's: an age belongs to the nearest name before it, so "Newsom will
    appoint Butler to the seat left by Dianne Feinstein, who died at age 90" does not say how old Butler is.
    With no name before it ("The 47-year-old astronaut"), it may be anyone's."""
    before = [e for e in found if e[1] <= age[0] and e[2] in _NAMES]
    if not before:
        return True
    words = set(_WORD.findall(sentence[before[-1][0] : before[-1][1]].casefold()))
    return bool(words & set(_WORD.findall(asked)))


_NUMBER_HOW = frozenset("many much old long far tall big large high fast often".split())
_DATE_NOUNS = frozenset("year date day month time decade century season week".split())
_NUMBER_NOUNS = frozenset(
    "number percent percentage amount price cost age score total share rate sum figure population salary".split()
)
PLACE_NOUNS = frozenset(
    "country city state town place county region nation island capital province continent venue stadium".split()
)
ORG_NOUNS = frozenset(
    "company team organization organisation group network party agency union firm club league university "
    "school brand airline bank channel studio newspaper outlet band carrier automaker retailer alliance "
    "treaty bloc coalition court committee ministry department institution charity startup".split()
)
_PRICE_VERBS = frozenset("cost costs pay paid sell sold worth raise raised earn earned spend spent charge owe".split())
_AUXILIARIES = frozenset("do does did is are was were has have had will would can could".split())
_PERSON_NOUNS = frozenset(
    "person man woman player actor actress singer president leader official candidate author writer director "
    "coach ceo chief minister senator judge lawyer rapper artist astronaut driver athlete star founder".split()
)
_WORD = re.compile(r"[A-Za-z']+")


def question_kind(question: str) -> str:
    """The answer kind asked for, from the first wh-word and the noun after "what"/"which"."""
    words = [w.lower() for w in _WORD.findall(question)]
    for i, word in enumerate(words):
        after = words[i + 1 : i + 4]
        if word == "how" and after:
            if after[0] == "much" and len(after) > 1 and after[1] in _AUXILIARIES:
                # "How much does Armenia rely on Russia?" asks for a degree; "How much did it cost?" for a sum
                return "number" if _PRICE_VERBS & set(words[i + 2 :]) else "manner"
            if after[0] == "old":
                return "age"
            if after[0] in _NUMBER_HOW:
                return "number"
            return "manner"
        if word in ("who", "whom", "whose"):
            return "person"
        if word == "when":
            return "date"
        if word == "where":
            return "place"
        if word == "why":
            return "reason"
        if word in ("what", "which"):
            if after and after[0] in ("do", "does", "did"):
                return "thing"  # "What did President Widodo order?" asks for an object, never the subject's noun
            for noun in after:
                if noun == "name":
                    return "name"  # "What is the name of ...?" asks for a named thing, whatever it is
                if noun in _DATE_NOUNS:
                    return "date"
                if noun in _NUMBER_NOUNS:
                    return "number"
                if noun in PLACE_NOUNS:
                    return "place"
                if noun in ORG_NOUNS:
                    return "organisation"
                if noun in _PERSON_NOUNS:
                    return "person"
            return "thing"
    return "thing"
