"""Turn a follow-up message into a self-contained question, deterministically and without a language model.

A conversation's later messages lean on earlier ones: "How did Moscow respond to him?", "And the
peacekeepers?", "What did he say next?". Retrieval needs the names those messages leave out, so the
resolver carries the salient entities of the recent turns into the question:

* person pronouns (he, him, his, she, her) are replaced by the person the previous turns were about
  (the subject of a question such as "Why does Pashinyan say ...", a titled or two-word name, someone
  who "said" something in the cited quotes);
* "it"/"they" and friends are replaced by the one noun phrase they can refer to ("the Lachin corridor",
  "the peacekeepers"), or else the question is augmented with the topics of the recent turns;
* ellipsis ("And the peacekeepers?", "What about Turkey?", a bare "Why?") and continuations without a
  topic of their own ("What happened next?") are augmented the same way;
* a question that names its own subject and leans on nothing is returned unchanged.

The article ids cited in the recent turns come back as ``prefer_articles`` for the retriever.

Hook for a language model: ``FollowupResolver(rewriter=...)`` takes any callable
``(question, history, rule_resolution) -> str | None``; when it returns a question, that one is used,
and when it fails or returns nothing, the rule-based resolution stands. Nothing here calls a model.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from service.answering.schemas import Answer

log = logging.getLogger("byline.followup")

MAX_CONTEXT_TERMS = 4
PREFER_FROM_TURNS = 2
MAX_PREFER_ARTICLES = 8


@dataclass(frozen=True)
class HistoryTurn:
    """What the resolver needs from one earlier turn of a conversation."""

    question: str
    standalone: str = ""
    answer_text: str = ""
    quotes: tuple[str, ...] = ()
    cited_article_ids: tuple[str, ...] = ()

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
        )


@dataclass(frozen=True)
class Resolution:
    standalone: str
    prefer_articles: list[str] = field(default_factory=list)
    method: Literal["unchanged", "rules", "llm"] = "unchanged"
    reasons: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.method != "unchanged"


Rewriter = Callable[[str, Sequence[HistoryTurn], Resolution], str | None]

# --------------------------------------------------------------------------------------------------
# word lists

_QUESTION_WORDS = {"what", "why", "how", "when", "where", "who", "whom", "whose", "which"}
_AUX = {
    "is", "are", "was", "were", "be", "been", "do", "does", "did", "has", "have", "had", "can", "could",
    "will", "would", "should", "may", "might", "must", "shall",
}  # fmt: skip
_DETERMINERS = {"the", "a", "an", "this", "that", "these", "those", "his", "her", "its", "their", "our", "my", "your"}
_PRONOUNS = {"he", "she", "it", "they", "we", "i", "you", "him", "them", "us", "me"}
_PREPOSITIONS = {
    "in", "on", "at", "for", "from", "to", "of", "with", "about", "after", "before", "during", "since",
    "despite", "under", "over", "by", "as", "into", "onto", "against", "between", "among", "through",
    "toward", "towards", "without", "within", "than", "like", "upon", "per", "via", "amid",
}  # fmt: skip
_CONJUNCTIONS = {"and", "but", "or", "so", "yet", "nor", "also", "then", "if", "although", "while", "because"}
_SENTENCE_STARTERS = (
    _QUESTION_WORDS
    | _AUX
    | _DETERMINERS
    | _PRONOUNS
    | _PREPOSITIONS
    | _CONJUNCTIONS
    | {
        "tell", "explain", "describe", "give", "show", "please", "now", "meanwhile", "however", "still",
        "last", "next", "according", "there", "here", "some", "many", "most", "all", "both", "other",
        "another", "such", "yes", "no", "not", "ok", "okay", "thanks", "thank", "well", "even", "only",
        "just", "instead", "later", "earlier", "today", "yesterday", "tomorrow", "monday", "tuesday",
        "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february", "march", "april",
        "may", "june", "july", "august", "september", "october", "november", "december", "photo", "read",
        "more", "opinion", "update", "breaking", "watch", "click", "subscribe",
    }
)  # fmt: skip
_TITLES = {
    "president", "prime", "minister", "mr", "mrs", "ms", "dr", "sen", "senator", "gov", "governor", "rep",
    "representative", "chancellor", "king", "queen", "prince", "princess", "pope", "secretary", "general",
    "gen", "judge", "justice", "speaker", "leader", "mayor", "ambassador", "commissioner", "chief",
    "director", "chairman", "chairwoman", "chair", "ceo", "premier", "foreign", "defense", "defence",
    "deputy", "vice", "col", "lt", "sgt", "capt", "adm", "rev", "sir", "lord", "lady", "dame", "sheikh",
    "emir", "ayatollah", "crown", "former", "state", "attorney", "spokesman", "spokeswoman", "coach",
    "officer", "detective", "sheriff", "professor", "prof", "archbishop", "bishop", "cardinal", "rabbi",
}  # fmt: skip
_ORG_WORDS = {
    "ministry", "council", "organization", "organisation", "union", "treaty", "party", "corps", "court",
    "university", "department", "house", "times", "news", "post", "journal", "agency", "association",
    "bank", "company", "corporation", "inc", "ltd", "group", "committee", "commission", "parliament",
    "assembly", "congress", "senate", "army", "navy", "forces", "force", "guard", "police", "office",
    "institute", "foundation", "fund", "federation", "league", "club", "international", "nations",
    "republic", "kingdom", "states", "government", "administration", "church", "school", "college",
    "hospital", "airlines", "airport", "street", "river", "sea", "ocean", "mountains", "island", "islands",
    "city", "county", "province", "region", "valley", "corridor", "square", "bridge", "center", "centre",
    "network", "review", "weekly", "daily", "tribune", "herald", "press", "media", "television",
    "radio", "museum", "summit", "war", "games", "cup", "series", "championship", "award", "awards", "act",
    "bill", "law", "plan", "program", "programme", "project", "operation", "festival", "day", "week",
}  # fmt: skip
_PLACES = {
    # countries and a few common alternative names
    "afghanistan", "albania", "algeria", "andorra", "angola", "argentina", "armenia", "australia", "austria",
    "azerbaijan", "bahamas", "bahrain", "bangladesh", "barbados", "belarus", "belgium", "belize", "benin",
    "bhutan", "bolivia", "bosnia", "botswana", "brazil", "brunei", "bulgaria", "burkina faso", "burundi",
    "cambodia", "cameroon", "canada", "chad", "chile", "china", "colombia", "comoros", "congo", "costa rica",
    "croatia", "cuba", "cyprus", "czech republic", "czechia", "denmark", "djibouti", "dominica", "ecuador",
    "egypt", "el salvador", "eritrea", "estonia", "eswatini", "ethiopia", "fiji", "finland", "france",
    "gabon", "gambia", "georgia", "germany", "ghana", "greece", "grenada", "guatemala", "guinea", "guyana",
    "haiti", "honduras", "hungary", "iceland", "india", "indonesia", "iran", "iraq", "ireland", "israel",
    "italy", "jamaica", "japan", "jordan", "kazakhstan", "kenya", "kiribati", "kosovo", "kuwait",
    "kyrgyzstan", "laos", "latvia", "lebanon", "lesotho", "liberia", "libya", "liechtenstein", "lithuania",
    "luxembourg", "madagascar", "malawi", "malaysia", "maldives", "mali", "malta", "mauritania", "mauritius",
    "mexico", "micronesia", "moldova", "monaco", "mongolia", "montenegro", "morocco", "mozambique", "myanmar",
    "burma", "namibia", "nauru", "nepal", "netherlands", "new zealand", "nicaragua", "niger", "nigeria",
    "north korea", "south korea", "korea", "norway", "oman", "pakistan", "palau", "palestine", "panama",
    "papua new guinea", "paraguay", "peru", "philippines", "poland", "portugal", "qatar", "romania",
    "russia", "rwanda", "samoa", "san marino", "saudi arabia", "senegal", "serbia", "seychelles",
    "sierra leone", "singapore", "slovakia", "slovenia", "somalia", "south africa", "south sudan", "spain",
    "sri lanka", "sudan", "suriname", "sweden", "switzerland", "syria", "taiwan", "tajikistan", "tanzania",
    "thailand", "togo", "tonga", "trinidad", "tunisia", "turkey", "turkiye", "turkmenistan", "tuvalu",
    "uganda", "ukraine", "united arab emirates", "uae", "united kingdom", "uk", "britain", "great britain",
    "england", "scotland", "wales", "united states", "us", "u.s.", "usa", "america", "uruguay", "uzbekistan",
    "vanuatu", "vatican", "venezuela", "vietnam", "yemen", "zambia", "zimbabwe",
    # regions, capitals and places that stand for governments in the news
    "europe", "asia", "africa", "middle east", "latin america", "caucasus", "balkans", "scandinavia",
    "gaza", "west bank", "crimea", "donbas", "nagorno-karabakh", "karabakh", "artsakh", "kashmir", "tibet",
    "hong kong", "moscow", "kremlin", "washington", "beijing", "kyiv", "kiev", "london", "paris", "berlin",
    "brussels", "jerusalem", "tel aviv", "tehran", "yerevan", "baku", "ankara", "istanbul", "cairo",
    "riyadh", "tokyo", "seoul", "pyongyang", "delhi", "new delhi", "taipei", "havana", "caracas", "rome",
    "madrid", "warsaw", "vienna", "geneva", "minsk", "tbilisi", "damascus", "beirut", "baghdad", "kabul",
    "islamabad", "doha", "dubai", "new york", "los angeles", "chicago", "houston", "philadelphia",
    "phoenix", "san francisco", "boston", "miami", "atlanta", "dallas", "seattle", "denver", "detroit",
    "las vegas", "silicon valley", "wall street", "hollywood", "white house", "pentagon", "capitol",
    "capitol hill", "downing street",
    # us states
    "alabama", "alaska", "arizona", "arkansas", "california", "colorado", "connecticut", "delaware",
    "florida", "hawaii", "idaho", "illinois", "indiana", "iowa", "kansas", "kentucky", "louisiana", "maine",
    "maryland", "massachusetts", "michigan", "minnesota", "mississippi", "missouri", "montana", "nebraska",
    "nevada", "new hampshire", "new jersey", "new mexico", "north carolina", "north dakota", "ohio",
    "oklahoma", "oregon", "pennsylvania", "rhode island", "south carolina", "south dakota", "tennessee",
    "texas", "utah", "vermont", "virginia", "west virginia", "wisconsin", "wyoming",
}  # fmt: skip
_SPEECH_VERBS = (
    "say|says|said|claim|claims|claimed|think|thinks|thought|believe|believes|believed|mean|means|meant|"
    "want|wants|wanted|argue|argues|argued|tell|tells|told|accuse|accuses|accused|blame|blames|blamed|"
    "respond|responds|responded|react|reacts|reacted|feel|feels|felt|propose|proposes|proposed|promise|"
    "promises|promised|warn|warns|warned|announce|announces|announced|plan|plans|planned|decide|decides|"
    "decided|explain|explains|explained|insist|insists|insisted|criticize|criticise|criticized|criticised|"
    "deny|denies|denied|admit|admits|admitted|write|writes|wrote|suggest|suggests|suggested|vow|vows|vowed"
)
_DEMONYM = re.compile(r"(?:ian|ean|ese|ish|ani|i|an)$")
_PERSON_PRONOUNS = {"he", "him", "his", "she", "her", "hers"}
_THING_SINGULAR = {"it", "its"}
_THING_PLURAL = {"they", "them", "their", "theirs"}
_DEMONSTRATIVES = {"that", "this", "those", "these"}
_CONTINUATION = re.compile(
    r"\b(?:next|else|then|afterwards|after that|more|further|further details|instead|too|also|again|now|"
    r"in response|the reaction|the response|react|respond|responded|reacted)\b",
    re.I,
)
_ELLIPSIS_LEAD = re.compile(
    r"^\s*(?:(?:and|but|so|also|then)\s+)?(?:what|how)\s+about\s+(?P<a>.+)$|"
    r"^\s*what\s+of\s+(?P<b>.+)$|"
    r"^\s*(?:and|but|also|plus)\s*,?\s+(?P<c>.+)$",
    re.I,
)

_WORD = re.compile(r"[A-Za-z\u00C0-\u024F0-9][A-Za-z\u00C0-\u024F0-9'\u2019.\-]*")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+")


# --------------------------------------------------------------------------------------------------
# entities and noun phrases


@dataclass
class Entity:
    text: str
    position: int
    titled: bool = False
    sentence_initial: bool = False

    @property
    def key(self) -> str:
        return self.text.lower()


def _strip_possessive(word: str) -> str:
    for suffix in ("'s", "\u2019s", "'", "\u2019"):
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            return word[: -len(suffix)]
    return word


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper()


def _clean_word(word: str) -> str:
    word = word.rstrip(".-'\u2019") if not re.fullmatch(r"(?:[A-Z]\.){2,}", word) else word
    return word


def entities(text: str) -> list[Entity]:
    """Runs of capitalised words that name something: people, places, organisations, events."""
    found: list[Entity] = []
    for sentence_match in re.finditer(r"[^.!?\n]+(?:[.!?]+|$)", text):
        sentence = sentence_match.group(0)
        offset = sentence_match.start()
        words = [(m.group(0), m.start() + offset) for m in _WORD.finditer(sentence)]
        index = 0
        while index < len(words):
            word, position = words[index]
            if not _is_capitalised(word):
                index += 1
                continue
            run: list[str] = []
            start = position
            sentence_initial = index == 0
            j = index
            while j < len(words):
                current = _clean_word(words[j][0])
                if _is_capitalised(current):
                    run.append(current)
                    j += 1
                    if _ends_name(words[j - 1][0]):
                        break
                    continue
                # connectors inside names: "Bank of England", "Organization for Security and Co-operation"
                if (
                    current.lower() in {"of", "for", "de", "al", "bin", "von", "van", "der", "la", "du", "and"}
                    and run
                    and j + 1 < len(words)
                    and _is_capitalised(words[j + 1][0])
                    and current.lower() != "and"
                ):
                    run.append(current)
                    j += 1
                    continue
                break
            index = max(j, index + 1)
            entity = _normalise_run(run, start, sentence_initial)
            if entity is not None:
                found.append(entity)
    return found


def _ends_name(raw: str) -> bool:
    """A possessive or a trailing comma-like mark ends a name: "Armenia's leader"."""
    return raw.endswith(("'s", "\u2019s"))


def _normalise_run(run: list[str], position: int, sentence_initial: bool) -> Entity | None:
    words = [_strip_possessive(w) for w in run]
    # drop sentence starters ("Why", "The", "And") at the front
    while words and words[0].lower() in _SENTENCE_STARTERS:
        words.pop(0)
        sentence_initial = False
    titled = False
    # drop leading demonyms and titles: "Armenian Prime Minister Nikol Pashinyan" -> "Nikol Pashinyan"
    while len(words) > 1 and (words[0].lower().rstrip(".") in _TITLES or _looks_demonym(words[0], words[1])):
        if words[0].lower().rstrip(".") in _TITLES:
            titled = True
        words.pop(0)
    while words and words[-1].lower() in {"of", "for", "de", "al", "the", "and"}:
        words.pop()
    if not words:
        return None
    text = " ".join(words)
    if len(text) < 2 or text.lower() in _SENTENCE_STARTERS or text == "I":
        return None
    if len(words) == 1 and words[0].lower().rstrip(".") in _TITLES:
        return None
    return Entity(text=text, position=position, titled=titled, sentence_initial=sentence_initial)


def _looks_demonym(word: str, following: str) -> bool:
    """A nationality adjective like "Armenian" in "Armenian Prime Minister", before a title or another name."""
    lowered = word.lower()
    if lowered in _PLACES:
        return False
    return bool(_DEMONYM.search(lowered)) and following.lower().rstrip(".") in _TITLES


def _is_adjective_use(text: str, entity: Entity) -> bool:
    """A demonym used as an adjective: "Russian" in "the Russian peacekeepers"."""
    if " " in entity.text or not _DEMONYM.search(entity.key) or entity.key in _PLACES:
        return False
    after = text[entity.position + len(entity.text) :]
    match = re.match(r"\s+([a-z][a-z\-]*)", after)
    return bool(match) and match.group(1) not in _AUX and match.group(1) not in _SPEECH_VERBS.split("|")


def is_place(name: str) -> bool:
    lowered = name.lower().removeprefix("the ")
    return lowered in _PLACES


def _is_org(name: str) -> bool:
    words = name.lower().split()
    return any(w.rstrip(".") in _ORG_WORDS for w in words) or (name.isupper() and len(name) <= 6)


def definite_phrases(text: str) -> list[tuple[str, int]]:
    """Noun phrases introduced by a determiner: "the Lachin corridor", "the Russian peacekeepers"."""
    out: list[tuple[str, int]] = []
    tokens = [(m.group(0), m.start()) for m in _WORD.finditer(text)]
    for i, (word, position) in enumerate(tokens):
        if word.lower() not in {"the", "this", "that", "these", "those"}:
            continue
        phrase: list[str] = []
        j = i + 1
        while j < len(tokens) and len(phrase) < 4:
            current = tokens[j][0]
            lowered = current.lower()
            if lowered in _SENTENCE_STARTERS or lowered in _SPEECH_VERBS.split("|") or lowered.endswith("ly"):
                break
            phrase.append(current)
            j += 1
            # punctuation right after the word ends the phrase
            end = tokens[j - 1][1] + len(current)
            if end < len(text) and text[end] in ",;:?!.)":
                break
        if phrase:
            out.append((f"the {' '.join(_strip_possessive(p) for p in phrase)}", position))
    return out


# --------------------------------------------------------------------------------------------------
# salience


@dataclass
class Candidate:
    text: str
    person: float = 0.0
    salience: float = 0.0
    first_turn: int = 0  # 0 = most recent
    first_position: int = 0
    plural: bool = False
    named: bool = True
    forms: set[str] = field(default_factory=set)


def _person_evidence(question: str, name: str) -> float:
    escaped = re.escape(name)
    score = 0.0
    aux = "|".join(sorted(_AUX))
    if re.search(rf"\b(?:{aux})\s+(?:[A-Z][\w.\-']*\s+)*{escaped}(?:'s)?\s+(?:{_SPEECH_VERBS})\b", question):
        score += 3
    if re.search(rf"{escaped}\s+(?:{_SPEECH_VERBS})\b", question):
        score += 2
    if re.search(rf"\bwho\s+(?:is|was)\s+{escaped}\b", question, re.I):
        score += 2
    if re.search(rf"\b(?:according to|said|says|told)\s+(?:[A-Z][\w.\-']*\s+)*{escaped}\b", question):
        score += 1
    return score


def _candidates(history: Sequence[HistoryTurn]) -> dict[str, Candidate]:
    """Entities and noun phrases of the recent turns, newest turn first, with person and salience scores."""
    found: dict[str, Candidate] = {}
    for age, turn in enumerate(reversed(history)):
        recency = 1.0 / (1 + age)
        searched = _strip_context(turn.searched)
        # evidence that a name is a person fades slowly: "he" may point back several turns
        lasting = 1.0 / (1 + 0.25 * age)
        # what the user asked about weighs most
        for entity in entities(searched):
            if _is_adjective_use(searched, entity):
                continue
            cand = _candidate(found, entity.text, age, entity.position)
            cand.salience += 3 * recency
            cand.person += (_person_evidence(searched, entity.text) + (2 if entity.titled else 0)) * lasting
        # the context an earlier resolution carried along: "What about the peacekeepers (Pashinyan, Russia)?"
        for position, term in enumerate(_context_list(turn.searched)):
            cand = _candidate(found, term, age, 5_000 + position, named=term[:1].isupper())
            cand.salience += 1 * recency
        for phrase, position in definite_phrases(searched):
            if any(w[:1].isupper() for w in phrase.split()[1:]) and is_place(phrase):
                continue
            cand = _candidate(found, phrase, age, position, named=False)
            cand.salience += 2 * recency
            cand.plural = phrase.endswith("s") and not phrase.endswith("ss")
        # context from the passage(s) quoted in the answer
        quoted = " ".join(turn.quotes) or turn.answer_text
        counts: Counter[str] = Counter()
        for entity in entities(quoted):
            if entity.sentence_initial and " " not in entity.text and entity.key not in found:
                continue
            if _is_adjective_use(quoted, entity):
                continue
            counts[entity.text] += 1
            cand = _candidate(found, entity.text, age, 10_000 + entity.position)
            cand.person += (1.0 if entity.titled else 0.0) * recency
        for name, count in counts.items():
            found[name.lower()].salience += min(count, 3) * 0.5 * recency
            found[name.lower()].person += min(_person_evidence(quoted, name), 3) * 0.5 * recency
    _merge_surnames(found)
    for cand in found.values():
        if not cand.named:
            cand.person = 0.0
            continue
        words = cand.text.split()
        if is_place(cand.text) or _is_org(cand.text):
            cand.person = -5.0
        elif len(words) >= 2 and all(w[:1].isupper() for w in words):
            cand.person += 1.5
    return found


def _candidate(found: dict[str, Candidate], text: str, age: int, position: int, named: bool = True) -> Candidate:
    key = text.lower()
    if key not in found:
        found[key] = Candidate(text=text, first_turn=age, first_position=position, named=named, forms={text})
    return found[key]


def _merge_surnames(found: dict[str, Candidate]) -> None:
    """Treat "Pashinyan" and "Nikol Pashinyan" as one person: pool their evidence under the form asked about."""
    names = [c for c in found.values() if c.named]
    for short in names:
        if " " in short.text:
            continue
        for full in names:
            if full is short or not full.text.endswith(" " + short.text):
                continue
            short.person += max(full.person, 0) + 1.5
            short.salience += full.salience * 0.5
            short.forms |= full.forms
            full.salience *= 0.5


def _context_list(question: str) -> list[str]:
    match = re.search(r"\(([^()]*)\)\s*[?.!]?\s*$", question)
    return [t.strip() for t in match.group(1).split(",") if t.strip()] if match else []


def _strip_context(question: str) -> str:
    """Drop a parenthesised context list added by an earlier resolution: "What about X (A, B)?" -> "What about X?"."""
    return re.sub(r"\s*\([^()]*\)(?=\s*[?.!]?\s*$)", "", question).strip()


def _context_terms(
    history: Sequence[HistoryTurn], question: str, found: dict[str, Candidate], limit: int = MAX_CONTEXT_TERMS
) -> list[str]:
    """The topics of the recent turns that the question does not already name, most salient first."""
    lowered = question.lower()
    ranked = sorted(
        (c for c in found.values() if c.named or c.first_turn == 0),
        key=lambda c: (c.first_turn, -c.salience, c.first_position),
    )
    terms: list[str] = []
    for cand in ranked:
        if cand.salience < 1.0:
            continue
        if cand.text.lower() in lowered or any(cand.text.lower() in t.lower() for t in terms):
            continue
        if not cand.named and any(w in lowered for w in cand.text.lower().split()[1:]):
            continue
        terms.append(cand.text)
        if len(terms) >= limit:
            break
    return terms


# --------------------------------------------------------------------------------------------------
# rewriting


@dataclass
class _Token:
    text: str
    start: int
    end: int


def _tokens(question: str) -> list[_Token]:
    return [_Token(m.group(0), m.start(), m.end()) for m in _WORD.finditer(question)]


def _match_case(replacement: str, sentence_start: bool) -> str:
    if sentence_start and replacement[:1].islower():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _is_anaphoric_demonstrative(tokens: list[_Token], i: int) -> bool:
    """True for "that" as a pronoun ("Is that true?", "by that", "after that"), not a complementiser or relative."""
    word = tokens[i].text.lower()
    if word not in _DEMONSTRATIVES:
        return False
    previous = tokens[i - 1].text.lower() if i > 0 else ""
    following = tokens[i + 1].text if i + 1 < len(tokens) else ""
    if not following:
        return True  # "What did he mean by that?"
    if i == 0:
        return True  # "That seems ...", "Is" comes first in "Is that true"
    if previous in _AUX or previous in _PREPOSITIONS or previous in _QUESTION_WORDS:
        return following.lower() not in _DETERMINERS | _PRONOUNS and not following[:1].isupper()
    return False


def _is_possessive_her(tokens: list[_Token], i: int) -> bool:
    if i + 1 >= len(tokens):
        return False
    following = tokens[i + 1].text.lower()
    return following not in _PREPOSITIONS | _CONJUNCTIONS | _AUX | _DETERMINERS | _PRONOUNS | {"to", "about"}


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") and not name[0].isupper() else f"{name}'s"


def _best_person(found: dict[str, Candidate], question: str) -> Candidate | None:
    lowered = question.lower()
    people = [
        c
        for c in found.values()
        if c.named and c.person >= 2.0 and not any(form.lower() in lowered for form in c.forms)
    ]
    if not people:
        return None
    return max(people, key=lambda c: (c.person + 2.0 / (1 + c.first_turn), -c.first_turn, -c.first_position))


def _single_topic(found: dict[str, Candidate], plural: bool, question: str) -> Candidate | None:
    """The one thing "it" (or "they") can refer to in the most recent turn, if there is exactly one."""
    lowered = question.lower()
    recent = [
        c
        for c in found.values()
        if c.first_turn == 0
        and c.first_position < 5_000
        and c.person < 2.0
        and c.text.lower() not in lowered
        and (c.plural == plural if not c.named else not plural)
    ]
    phrases = [c for c in recent if not c.named]
    if len(phrases) == 1:
        return phrases[0]
    if not phrases and len(recent) == 1 and not plural:
        return recent[0]
    return None


def _own_topic(question: str) -> bool:
    """Whether the question names something of its own (a name or a noun phrase beyond pronouns)."""
    return any(not _is_adjective_use(question, e) for e in entities(question))


def _augment(question: str, terms: list[str]) -> str:
    if not terms:
        return question
    body = question.rstrip()
    mark = "?"
    if body and body[-1] in "?.!":
        mark = "?" if body[-1] == "?" else body[-1]
        body = body[:-1].rstrip()
    return f"{body} ({', '.join(terms)}){mark}"


class FollowupResolver:
    """Rule-based follow-up resolution, with an optional rewriter hook (e.g. a language model)."""

    def __init__(self, rewriter: Rewriter | None = None) -> None:
        self.rewriter = rewriter

    def resolve(self, question: str, history: Sequence[HistoryTurn]) -> Resolution:
        resolution = resolve_followup(question, history)
        if self.rewriter is None or not history:
            return resolution
        try:
            rewritten = self.rewriter(question, history, resolution)
        except Exception as exc:  # noqa: BLE001 - a failing rewriter must never fail the turn
            log.warning("follow-up rewriter failed, keeping the rule-based question: %s", exc)
            return resolution
        if rewritten and rewritten.strip() and rewritten.strip() != resolution.standalone:
            return Resolution(
                standalone=rewritten.strip(),
                prefer_articles=resolution.prefer_articles,
                method="llm",
                reasons=(*resolution.reasons, "rewriter"),
            )
        return resolution


def prefer_articles(history: Sequence[HistoryTurn], turns: int = PREFER_FROM_TURNS) -> list[str]:
    """Article ids cited in the most recent turns, newest first, without repeats."""
    ids: list[str] = []
    for turn in reversed(history[-turns:] if turns else history):
        for article_id in turn.cited_article_ids:
            if article_id not in ids:
                ids.append(article_id)
    return ids[:MAX_PREFER_ARTICLES]


def resolve_followup(question: str, history: Sequence[HistoryTurn]) -> Resolution:
    """The self-contained form of ``question`` given the earlier turns (oldest first)."""
    question = " ".join(question.split())
    preferred = prefer_articles(history)
    if not history or not question:
        return Resolution(standalone=question, prefer_articles=preferred)
    found = _candidates(history)
    reasons: list[str] = []

    # 1. ellipsis: "And the peacekeepers?", "What about Turkey?"
    ellipsis = _ELLIPSIS_LEAD.match(question.rstrip("?.! "))
    if ellipsis:
        rest = next(g for g in ellipsis.groups() if g)
        words = rest.split()
        if len(words) <= 6 and not any(w.lower() in _AUX for w in words[1:]):
            rest = _rewrite_pronouns(rest, found, reasons, allow_leading=False)
            base = f"What about {rest}?"
            reasons.append(f"ellipsis:{rest}")
            terms = _context_terms(history, base, found)
            return Resolution(_augment(base, terms), preferred, "rules", tuple(reasons))

    # 2. a bare question word: "Why?", "When?", "How so?"
    bare = re.fullmatch(r"(?i)(why|when|where|how|who)(?:\s+(?:so|not|exactly))?\s*[?.!]*", question)
    if bare:
        previous = _strip_context(history[-1].searched)
        frame = re.match(r"(?i)(what|why|when|where|how|who|which)\b(.*)", previous)
        reasons.append("bare-question-word")
        word = bare.group(1).capitalize()
        if frame and frame.group(2).strip():
            rest = frame.group(2).strip().rstrip("?.! ")
            return Resolution(f"{word} {rest}?", preferred, "rules", tuple(reasons))
        return Resolution(_augment(f"{word}?", _context_terms(history, "", found)), preferred, "rules", tuple(reasons))

    rewritten = _rewrite_pronouns(question, found, reasons, allow_leading=True)
    tokens = _tokens(rewritten)
    lowered_words = {t.text.lower() for t in tokens}
    unresolved = any(t.text.lower() in _THING_SINGULAR | _THING_PLURAL | _PERSON_PRONOUNS for t in tokens) or any(
        _is_anaphoric_demonstrative(tokens, i) for i in range(len(tokens))
    )
    needs_context = unresolved
    if not needs_context and not reasons:
        # continuations without a topic of their own: "What happened next?", "Tell me more."
        if _CONTINUATION.search(question) and not _own_topic(question) and not definite_phrases(question):
            needs_context = True
            reasons.append("continuation")
        elif len(lowered_words - _SENTENCE_STARTERS - _QUESTION_WORDS) <= 1 and not _own_topic(question):
            needs_context = True
            reasons.append("no-topic")
    if reasons and not needs_context:
        # a pronoun was replaced by a common noun phrase: keep the named context alongside it
        if any(r.startswith("thing:") for r in reasons):
            terms = [t for t in _context_terms(history, rewritten, found) if t[:1].isupper()]
            rewritten = _augment(rewritten, terms)
        return Resolution(rewritten, preferred, "rules", tuple(reasons))
    if needs_context:
        terms = _context_terms(history, rewritten, found)
        if terms:
            reasons.append("context")
            return Resolution(_augment(rewritten, terms), preferred, "rules", tuple(reasons))
        if reasons and rewritten != question:
            return Resolution(rewritten, preferred, "rules", tuple(reasons))
    return Resolution(question, preferred)


def _rewrite_pronouns(text: str, found: dict[str, Candidate], reasons: list[str], allow_leading: bool) -> str:
    """Replace person pronouns by the person of the recent turns, and "it"/"they" by their one referent."""
    tokens = _tokens(text)
    person = _best_person(found, text)
    singular = _single_topic(found, plural=False, question=text)
    plural = _single_topic(found, plural=True, question=text)
    pieces: list[str] = []
    cursor = 0
    for i, token in enumerate(tokens):
        word = token.text.lower()
        replacement: str | None = None
        sentence_start = i == 0
        if word in _PERSON_PRONOUNS and person is not None:
            name = person.text
            if word == "his" or (word == "her" and _is_possessive_her(tokens, i)) or word == "hers":
                replacement = _possessive(name)
            else:
                replacement = name
            reasons.append(f"person:{word}->{name}")
        elif word in _THING_SINGULAR and singular is not None:
            replacement = _possessive(singular.text) if word == "its" else singular.text
            reasons.append(f"thing:{word}->{singular.text}")
        elif word in _THING_PLURAL and plural is not None:
            replacement = f"{plural.text}'" if word in {"their", "theirs"} else plural.text
            reasons.append(f"thing:{word}->{plural.text}")
        if replacement is None:
            continue
        pieces.append(text[cursor : token.start])
        pieces.append(_match_case(replacement, sentence_start and allow_leading))
        cursor = token.end
    pieces.append(text[cursor:])
    return "".join(pieces)
