"""Turn a follow-up message into a self-contained question: spaCy entity tracking plus history-aware retrieval.

A later message leans on earlier ones ("How old is he?", "And the previous world record?", "Who is the
union's president?"). :class:`FollowupResolver` gives back a :class:`Resolution`:

* ``standalone``: the question as a readable sentence, the one the reader scores sentences against. Pronouns
  are replaced by what they point to in the recent turns, found with spaCy's tagger and named entities
  (``he``/``she`` -> the person asked about, or the person a "Who ...?" turn was answered with; ``it`` -> the
  thing asked about; ``they`` -> an organisation or a plural noun phrase); "the station" becomes "the
  Tiangong space station" when an earlier turn named one, and "the country" / "the union" the place or
  organisation it named (an assumption, so said in ``assumed``); a wh-fragment ("And how many Republicans?") takes
  the frame of the question before it; anything else that leans on the history without naming anything
  gets ", regarding <the previous subject>" and says so in ``assumed``.
* ``context``: where the rewrite may not stand on its own (it assumed a subject, left a pronoun, or changed
  nothing), the recent turns' questions, added to the retrieval query only (history-aware retrieval).
* ``prefer_articles``: then too, the articles cited in the recent turns, favoured in ranking.
* ``conversation``: for every follow-up, the recent turns' questions; the reader counts them in a passage's
  coverage of the question (a follow-up names little of its topic). ``cited``: the articles those turns cited,
  whose sentences the reader favours a little (a conversation tends to stay with its story).

A topic switch (a question that names something the conversation never mentioned and leans on nothing)
inherits nothing: no rewrite, no context, no preferred articles.

``FollowupResolver(rewriter=...)`` takes any callable ``(question, history, resolution) -> str | None``
(e.g. a language model); its question is used when it returns one, else the resolution above stands.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from service.answering.reading import entities as ner
from service.answering.reading.entities import PIPELINE
from service.answering.reading.kinds import ORG_NOUNS, PLACE_NOUNS
from service.answering.schemas import Answer

log = logging.getLogger("byline.followup")

CONTEXT_TURNS = 2  # earlier turns whose questions join the retrieval query
PREFER_FROM_TURNS = 2
MAX_PREFER_ARTICLES = 8
ANSWER_CHARS = 400  # of an earlier answer: where its subject is named

NAME_LABELS = {"PERSON", "ORG", "GPE", "LOC", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW"}
THING_LABELS = {"ORG", "PRODUCT", "EVENT", "WORK_OF_ART", "FAC", "LAW"}
PERSON_PRONOUNS = {"he", "him", "his", "she", "her", "hers"}
THING_PRONOUNS = {"it", "its"}
PLURAL_PRONOUNS = {"they", "them", "their", "theirs"}
WH_WORDS = {"what", "which", "who", "whom", "whose", "how", "when", "where", "why"}
DO = {"do", "did", "does", "done", "doing"}
AUX = DO | {"will", "would", "can", "could", "should", "has", "have", "is", "are", "was", "were"}
NOT_NAMES = set("ceo cfo coo cto president prime minister senator governor mr mrs ms dr".split())  # titles
_LEAD = re.compile(r"^\s*(?:and|but|also|so|then)\b[\s,]*|^\s*(?:what|how)\s+about\s+", re.I)
_MARKERS = re.compile(r"\s*\[\d+\]")


@dataclass(frozen=True)
class HistoryTurn:
    """What the resolver needs from one earlier turn of a conversation."""

    question: str
    standalone: str = ""
    answer_text: str = ""
    quotes: tuple[str, ...] = ()
    cited_article_ids: tuple[str, ...] = ()
    short_answer: str = ""

    @property
    def searched(self) -> str:
        return self.standalone or self.question

    @classmethod
    def from_answer(cls, question: str, answer: Answer) -> HistoryTurn:
        cited = tuple(dict.fromkeys(source.article_id for source in answer.sources))
        quotes = tuple(quote.text for source in answer.sources for quote in source.quotes)
        return cls(
            question=question,
            standalone=answer.standalone_question,
            answer_text="" if answer.abstained else answer.answer,
            quotes=quotes,
            cited_article_ids=cited,
            short_answer=answer.short_answer.text if answer.short_answer and not answer.abstained else "",
        )


@dataclass(frozen=True)
class Resolution:
    standalone: str
    prefer_articles: list[str] = field(default_factory=list)
    method: Literal["unchanged", "switch", "context", "resolved", "llm"] = "unchanged"
    reasons: tuple[str, ...] = ()
    context: str = ""  # for retrieval, where the rewrite may not stand on its own
    assumed: str | None = None  # the earlier subject an uncertain resolution assumed
    conversation: str = ""  # the recent turns' questions, for every follow-up: a passage's coverage counts them
    cited: list[str] = field(default_factory=list)  # articles the recent turns cited, for every follow-up

    @property
    def changed(self) -> bool:
        return self.method in ("resolved", "llm")


Rewriter = Callable[[str, Sequence[HistoryTurn], Resolution], str | None]


# ---------------------------------------------------------------------------------------------- parsing

_lock = threading.Lock()
_nlp: Any = None
_docs: OrderedDict[tuple[str, bool], Any] = OrderedDict()
_CACHE = 4096


def parse(text: str, with_ner: bool = True) -> Any:
    """A spaCy Doc (tagger, and NER unless ``with_ner=False``; no parser), cached by text: a turn is parsed once."""
    global _nlp
    with _lock:
        if _nlp is None:
            spacy = ner.lean_spacy()
            _nlp = spacy.load(PIPELINE, exclude=["parser", "lemmatizer", "senter"])
            log.info("loaded %s for follow-ups (%s)", PIPELINE, ", ".join(_nlp.pipe_names))
        doc = _docs.get((text, with_ner))
        if doc is None:
            with _nlp.select_pipes(disable=[] if with_ner else ["ner"]):
                doc = _docs[(text, with_ner)] = _nlp(text)
            while len(_docs) > _CACHE:
                _docs.popitem(last=False)
        _docs.move_to_end((text, with_ner))
        return doc


def warm() -> None:
    """Load the pipeline now rather than on the first follow-up."""
    parse("Who is he?")


@dataclass(frozen=True)
class Mention:
    text: str
    label: str  # a spaCy entity label, "NAME" for a capitalised run NER did not type, "NP" for a noun phrase
    start: int  # token span in its Doc
    end: int
    plural: bool = False
    asks: bool = False  # a noun phrase the question asks about ("Which spacecraft"): the answer is its referent
    head: str = ""  # a noun phrase's head noun, lowercased


def _proper(doc: Any, i: int, other: set[int]) -> bool:
    tok = doc[i]
    if i in other or not tok.is_alpha or not tok.text[:1].isupper() or tok.text in ("I",):
        return False
    return tok.tag_ in ("NNP", "NNPS") or (i > 0 and tok.tag_ not in ("JJ", "JJR", "JJS", "NNS"))


def names(doc: Any) -> list[Mention]:
    """Named entities and runs of proper nouns NER missed ("Rite Aid", "Musk"), hyphens joined, without "'s"."""
    typed = {i: e.label_ for e in doc.ents if e.label_ in NAME_LABELS for i in range(e.start, e.end)}
    other = {i for e in doc.ents if e.label_ not in NAME_LABELS for i in range(e.start, e.end)}

    def inside(j: int) -> bool:
        if doc[j].tag_ == "POS":
            return False
        if j in typed or _proper(doc, j, other):
            return True
        joined = doc[j].text == "-" and not doc[j - 1].whitespace_ and not doc[j].whitespace_ and j + 1 < len(doc)
        return joined and (j + 1 in typed or _proper(doc, j + 1, other))

    found: list[Mention] = []
    i = 0
    while i < len(doc):
        if i in typed or _proper(doc, i, other):
            j = i + 1
            while j < len(doc) and inside(j):
                j += 1
            label = next((typed[k] for k in range(i, j) if k in typed), "NAME")
            end = j - 1 if doc[j - 1].tag_ == "POS" else j
            found.append(Mention(doc[i:end].text, label, i, end, head=doc[max(i, end - 1)].lower_))
            i = j
        else:
            i += 1
    return found


def noun_phrases(doc: Any) -> list[Mention]:
    """Noun phrases led by a determiner (or "which", "how many"), with of/on/from/in/over attachments."""
    dates = {i for e in doc.ents if e.label_ in ("DATE", "TIME") for i in range(e.start, e.end)}
    found: list[Mention] = []
    i = 0
    while i < len(doc):
        tok = doc[i]
        asks = tok.lower_ in WH_WORDS
        lead = 2 if tok.lower_ == "how" and i + 1 < len(doc) and doc[i + 1].lower_ in ("many", "much") else 1
        if tok.tag_ in ("DT", "PRP$", "WDT") or lead == 2:
            j = i + lead
            while j < len(doc) and (
                doc[j].tag_.startswith(("JJ", "NN", "CD", "VBN")) or doc[j].tag_ in ("POS", "HYPH")
            ):
                j += 1
            if (
                i > 0
                and j > i + lead + 1
                and doc[i - 1].lower_ in AUX
                and doc[j - 2].tag_.startswith("NN")
                and (j == len(doc) or doc[j].is_punct)
                and not any(t.tag_.startswith("VB") for t in doc[j:])
            ):
                j -= 1  # "How did the Russian government react?": "react" is a verb the tagger read as a noun
            if j > i + lead and doc[j - 1].tag_.startswith("NN"):
                end = j
                while (
                    end + 1 < len(doc)
                    and doc[end].lower_ in ("of", "on", "from", "in", "over")
                    and end + 1 not in dates
                ):
                    k = end + 1 + (doc[end + 1].tag_ in ("DT", "PRP$"))
                    while k < len(doc) and (doc[k].tag_.startswith(("JJ", "NN", "CD")) or doc[k].tag_ == "HYPH"):
                        k += 1
                    while k > end + 1 and not doc[k - 1].tag_.startswith(("NN", "CD")):
                        k -= 1  # "... over Nagorno-Karabakh last?": the phrase ends at its last noun
                    if k == end + 1 or not doc[k - 1].tag_.startswith(("NN", "CD")):
                        break
                    end = k
                text = ("the " + doc[i + lead : end].text) if asks else doc[i:end].text
                plural = doc[j - 1].tag_ in ("NNS", "NNPS")
                found.append(Mention(text, "NP", i, end, plural=plural, asks=asks, head=doc[j - 1].lower_))
                i = j  # the attachments' own noun phrases come next
                continue
        i += 1
    return found


# ------------------------------------------------------------------------------------------- resolving


def prefer_articles(history: Sequence[HistoryTurn], turns: int = PREFER_FROM_TURNS) -> list[str]:
    """Article ids cited in the most recent turns, newest first, without repeats."""
    ids: list[str] = []
    for turn in reversed(history[-turns:] if turns else history):
        ids.extend(a for a in turn.cited_article_ids if a not in ids)
    return ids[:MAX_PREFER_ARTICLES]


def _mentioned(text: str, history: Sequence[HistoryTurn]) -> bool:
    lowered = text.lower()
    return any(lowered in part.lower() for t in history for part in (t.searched, t.short_answer, t.answer_text))


def _answer_people(turn: HistoryTurn) -> list[str]:
    """People named in a turn's answer: its short answer first, then its quotes (NER cached by the reader)."""
    texts = [turn.short_answer] if turn.short_answer else []
    texts += list(turn.quotes[:3]) or [" ".join(_MARKERS.sub("", turn.answer_text).split())[:ANSWER_CHARS]]
    people: list[str] = []
    for text, found in zip(texts, ner.entities([t for t in texts if t]), strict=False):
        people.extend(text[s:e] for s, e, label in found if label == "PERSON")
    return list(dict.fromkeys(people))


def _person(history: Sequence[HistoryTurn]) -> tuple[str, bool] | None:
    """Who "he"/"she" is, and whether that was read from an answer (uncertain) rather than a question: the
    person a turn asked about (newest first), or the one a "Who ...?" turn was answered with, unless that turn
    itself pointed back at someone ("Who is his finance minister?"); then a name NER left untyped; then anyone
    an answer named."""
    for turn in reversed(history):
        asked = [m.text for m in names(parse(turn.searched)) if m.label == "PERSON"]
        pointed = any(w.strip("?,.").lower() in PERSON_PRONOUNS for w in turn.question.split())
        if turn.searched.lower().startswith(("who ", "whom ")) and not pointed:
            answered = [p for p in _answer_people(turn) if not any(p in a or a in p for a in asked)]
            if answered:
                return answered[0], True
        elif asked:
            return asked[0], False
    for turn in reversed(history):
        if untyped := [m.text for m in names(parse(turn.searched)) if m.label == "NAME"]:
            return untyped[0], True
    for turn in reversed(history):
        if answered := _answer_people(turn):
            return answered[0], True
    return None


def _thing(history: Sequence[HistoryTurn], word: str) -> str | None:
    """What "it" (or "they") points to: the first thing or noun phrase of the newest turn with one; for "its",
    "they" and "their" a named thing or organisation before a noun phrase, for "them" the other way round."""
    plural = word in PLURAL_PRONOUNS
    for turn in reversed(history):
        doc = parse(turn.searched)
        people = {i for e in doc.ents if e.label_ in ("PERSON", "GPE", "NORP") for i in range(e.start, e.end)}
        labels = {"ORG", "NAME"} if plural else THING_LABELS
        phrases = [m for m in noun_phrases(doc) if m.plural == plural and (plural or not m.asks)]
        phrases += _bare_plurals(doc, phrases) if plural else []
        named = [m for m in names(doc) if m.label in labels and not (m.end < len(doc) and doc[m.end].tag_ == "POS")]
        first = {"it": 0, "them": -1}.get(word, 1)  # noun phrases after names ("they", "their", "its") or before
        # a name inside a plural phrase stands for the phrase: "How many UAW members ..." -> "the UAW members"
        named = [next((p for p in phrases if p.start <= m.start < p.end), m) if plural else m for m in named]
        pool = [(first * (m.label == "NP"), m.start, m) for m in phrases + named]
        pool = [p for p in pool if not _within(p[2], people) and not _has_pronoun(p[2].text)]
        if pool:
            return min(pool, key=lambda p: p[:2])[2].text
    return None


def _within(mention: Mention, tokens: set[int]) -> bool:
    return all(i in tokens for i in range(mention.start, mention.end))


def _bare_plurals(doc: Any, phrases: Sequence[Mention]) -> list[Mention]:
    """Plural noun phrases without a determiner that are the question's subject ("Where did US scientists
    achieve ...?"; not the object in "Which group put up fake signs?"), outside the determiner-led ones and not
    asked about ("How many days")."""
    inside = {i for p in phrases for i in range(p.start, p.end)}
    verb = next((t.i for t in doc if t.tag_.startswith("VB") and t.lower_ not in AUX), len(doc))
    found: list[Mention] = []
    for i, tok in enumerate(doc[:verb]):
        if tok.tag_ not in ("NNS", "NNPS") or i in inside:
            continue
        start = i
        while start > 0 and doc[start - 1].tag_ in ("NNP", "NN", "JJ", "HYPH") and start - 1 not in inside:
            start -= 1
        if start == i or (start > 0 and doc[start - 1].lower_ in WH_WORDS | {"many", "much"}):
            continue
        if not found or found[-1].end <= start:
            found.append(Mention(doc[start : i + 1].text, "NP", start, i + 1, plural=True, head=tok.lower_))
    return found


def _named_as(history: Sequence[HistoryTurn], noun: str, taken: Sequence[str] = ()) -> str | None:
    """The place or organisation a class noun ("country", "union") stands for: the first one the newest turn
    naming any names, other than those ``taken`` by an earlier class noun of the question ("the agency's director
    called the bank": two of them); of "Malang, Indonesia" the country, not the city before it."""
    labels = {"GPE", "LOC"} if noun in PLACE_NOUNS else {"ORG"} if noun in ORG_NOUNS else set()
    if not labels:
        return None
    turns = [(doc := parse(turn.searched), [m for m in names(doc) if m.label in labels]) for turn in reversed(history)]
    # a place named before a comma and another ("Malang, Indonesia") is the smaller one, in every turn
    inner = {
        m.text
        for doc, found in turns
        for m, n in zip(found, found[1:], strict=False)
        if n.start == m.end + 1 and doc[m.end].text == ","
    }
    for _, found in turns:
        if chosen := [m.text for m in found if m.text not in taken and m.text not in inner]:
            return chosen[0]
    return None


def _has_pronoun(text: str) -> bool:
    return any(w.lower() in PERSON_PRONOUNS | THING_PRONOUNS | PLURAL_PRONOUNS for w in text.split())


def _subject(history: Sequence[HistoryTurn], question: str) -> str | None:
    """For a follow-up that names nothing: the names of the newest turn that has any, and if those are all
    people, the newest thing named before them (at most two, "A and B")."""
    found: list[Mention] = []
    for turn in reversed(history):
        fresh = list(
            {m.text: m for m in names(parse(turn.searched)) if m.text.lower() not in question.lower()}.values()
        )
        if not found:
            found = fresh[:2]
            if any(m.label != "PERSON" for m in found):
                break
        elif thing := next((m for m in fresh if m.label != "PERSON" and m.text != found[0].text), None):
            found = [found[0], thing]
            break
    return " and ".join(m.text for m in found) or None


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") and name[:1].islower() else f"{name}'s"


def _wh_fragment(fragment: Any, previous: str) -> str | None:
    """A question-word fragment in the frame of the previous question: "And how many Republicans?" after "How many
    Democrats voted to remove ...?" -> "How many Republicans voted to remove ...?"; "Why?" after "How did Moscow
    respond?" -> "Why did Moscow respond?"."""
    words = [t for t in fragment if not t.is_punct]
    if not words or words[0].lower_ not in WH_WORDS or any(t.tag_.startswith(("VB", "MD")) for t in words):
        return None
    doc = parse(previous)
    verb = next((t.i for t in doc if t.tag_.startswith(("VB", "MD"))), None)
    if verb is None or not (verb == 1 if len(words) == 1 else doc[0].lower_ == words[0].lower_):
        return None
    lead = " ".join(t.text for t in words)
    return f"{lead[:1].upper()}{lead[1:]} {doc[verb:].text.rstrip('?.! ')}?"


def _leans(doc: Any) -> list[Any]:
    """The words of a question that point back: third-person pronouns and a pronoun "that"/"this"."""
    found = [t for t in doc if t.lower_ in PERSON_PRONOUNS | THING_PRONOUNS | PLURAL_PRONOUNS]
    found += [
        t
        for t in doc
        if t.lower_ in ("that", "this")
        and t.tag_ in ("DT", "WDT")
        and not (t.i + 1 < len(doc) and doc[t.i + 1].tag_.startswith(("NN", "JJ", "CD")))
    ]
    return found


def resolve_followup(question: str, history: Sequence[HistoryTurn]) -> Resolution:
    """The self-contained form of ``question`` given the earlier turns (oldest first)."""
    question = " ".join(question.split())
    if not history or not question:
        return Resolution(standalone=question)
    lead = _LEAD.match(question)
    body = question[lead.end() :] if lead and lead.end() < len(question) else question
    doc = parse(body, with_ner=False)
    pointers = _leans(doc)
    new_names = [m for m in names(doc) if m.text.lower() not in NOT_NAMES and not _mentioned(m.text, history)]
    if not lead and not pointers and new_names:
        return Resolution(standalone=question, method="switch", reasons=(f"switch:{new_names[0].text}",))

    reasons: list[str] = []
    assumed: str | None = None
    replacements: dict[int, str] = {}
    person = _person(history) if any(t.lower_ in PERSON_PRONOUNS for t in pointers) else None
    person = None if person and person[0].lower() in question.lower() else person
    for tok in pointers:
        word = tok.lower_
        possessive = tok.tag_ == "PRP$" or word in ("his", "its", "their")
        if word in PERSON_PRONOUNS and person:
            replacements[tok.i] = _possessive(person[0]) if possessive else person[0]
            assumed = person[0] if person[1] else assumed
        elif word in THING_PRONOUNS and not (word == "it" and doc[tok.i - 1].lower_ in DO and _ends(doc, tok.i)):
            if thing := _thing(history, word):
                replacements[tok.i] = _possessive(thing) if possessive else thing
        elif word in PLURAL_PRONOUNS and (thing := _thing(history, word)):
            replacements[tok.i] = _possessive(thing) if possessive else thing
        if tok.i in replacements:
            reasons.append(f"{word}->{replacements[tok.i]}")
    # "the station" -> "the Tiangong space station", when an earlier turn named one; "the union" -> "UAW"
    earlier = [m for t in reversed(history) for m in (*names(parse(t.searched)), *noun_phrases(parse(t.searched)))]
    for tok in doc:
        if tok.tag_ == "NN" and tok.i > 0 and doc[tok.i - 1].lower_ == "the" and tok.i not in replacements:
            match = next((e.text for e in earlier if e.head == tok.lower_ and len(e.text.split()) > 1), None)
            if match and not _has_pronoun(match):
                replacements[tok.i] = match[4:] if match.lower().startswith("the ") else match
                reasons.append(f"the {tok.text}->{match}")
            elif named := _named_as(history, tok.lower_, [r for r in replacements.values() if r]):
                # "the country's president" -> "Indonesia's president"
                replacements[tok.i - 1], replacements[tok.i] = "", named
                assumed = assumed or named
                reasons.append(f"the {tok.text}->{named}")
    standalone = _render(doc, replacements)
    if not replacements and (fragment := _wh_fragment(doc, history[-1].searched)):
        standalone = fragment
        reasons.append("wh-fragment")
    elif lead and not any(t.tag_.startswith(("VB", "MD")) for t in doc):
        standalone = f"What about {standalone.rstrip('?.! ')}?"
        reasons.append("ellipsis")
    grounded = bool(replacements) or "wh-fragment" in reasons or any(_mentioned(m.text, history) for m in names(doc))
    if not grounded and (subject := _subject(history, standalone)):
        standalone = f"{standalone.rstrip('?.! ')}, regarding {subject}?"
        assumed = subject
        reasons.append("regarding")
    standalone = standalone[:1].upper() + standalone[1:]
    # the earlier questions join the search, and their cited articles are favoured, only where the rewrite may
    # not stand on its own
    unsure = (
        not grounded or assumed is not None or "ellipsis" in reasons or any(t.i not in replacements for t in pointers)
    )
    recent = " ".join(t.searched for t in history[-CONTEXT_TURNS:])
    method: Literal["context", "resolved"] = "resolved" if standalone != question else "context"
    preferred = prefer_articles(history) if unsure else []
    return Resolution(
        standalone,
        preferred,
        method,
        tuple(reasons),
        recent if unsure else "",
        assumed,
        conversation=recent,
        cited=prefer_articles(history),
    )


def _ends(doc: Any, i: int) -> bool:
    """Whether token i ends its clause: "Why did they do it?" (an action, not a thing to name)."""
    return i + 1 == len(doc) or doc[i + 1].is_punct


def _render(doc: Any, replacements: dict[int, str]) -> str:
    out = "".join(replacements.get(t.i, t.text) + t.whitespace_ if replacements.get(t.i, t.text) else "" for t in doc)
    return " ".join(out.split())


class FollowupResolver:
    """Follow-up resolution, with an optional rewriter hook (e.g. a language model)."""

    def __init__(self, rewriter: Rewriter | None = None) -> None:
        self.rewriter = rewriter

    def resolve(self, question: str, history: Sequence[HistoryTurn]) -> Resolution:
        resolution = resolve_followup(question, history)
        if self.rewriter is None or not history or resolution.method == "switch":
            return resolution
        try:
            rewritten = self.rewriter(question, history, resolution)
        except Exception as exc:  # noqa: BLE001 - a failing rewriter must never fail the turn
            log.warning("follow-up rewriter failed, keeping the resolved question: %s", exc)
            return resolution
        if rewritten and rewritten.strip() and rewritten.strip() != resolution.standalone:
            return Resolution(
                rewritten.strip(),
                resolution.prefer_articles,
                "llm",
                (*resolution.reasons, "rewriter"),
                resolution.context,
                resolution.assumed,
                resolution.conversation,
                resolution.cited,
            )
        return resolution
