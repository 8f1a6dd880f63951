"""Remove publisher boilerplate from an article's text and keep the article.

The text is handled a paragraph (a line) at a time. Whitespace is normalised (NFC, ``\\n`` line ends,
runs of spaces and tabs collapsed, lines stripped, paragraphs joined by a blank line); words are never
changed. Paragraphs, or fragments of them, that are publisher furniture are removed and listed in
``Cleaned.dropped``: subscription and newsletter promos, "Read more"/"Related" links, advertisement
markers, disclaimers, "About the writer" headings, tag lines repeated on the page, the section labels
standing before them, and photo credits. A paragraph that ended with a photo credit is a caption: it is
kept (without the credit) and its span recorded in ``Cleaned.captions``, together with a short title-like
line just before it. Everything else, including the author's bio line near the end, is kept.

Every rule is a pattern over one paragraph or sentence; rules that would drop a whole paragraph apply
only to short ones, so a long paragraph of article text is never lost to a stray phrase.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

Span = tuple[int, int]


@dataclass
class Cleaned:
    text: str
    captions: list[Span] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- limits

SHORT_LINE = 300  # a promo/link/notice line is at most this long; longer paragraphs are article text
PROMO_PARAGRAPH = 800  # a paragraph that *starts* like a subscription pitch may be this long
TAG_LINE = 200  # a repeated sentence up to this long after the article is a tag line: all copies go
LABEL_WORDS = 4  # a standalone section label ("Uncommon Knowledge") has at most this many words
TITLE_LINE_CHARS = 120  # a caption's title line ("Vladimir Putin meets with ...") is at most this long
CREDIT_LOOKBACK = 200  # how far before an agency name a photographer's name may start
CREDIT_PART_WORDS = 5  # words in one "/"-separated part of a credit ("Ira L. Black", "The Washington Post")
CREDIT_PARTS = 4  # "/"-separated parts before the agency ("RJ Sangosti/MediaNews Group/The Denver Post")

# ------------------------------------------------------------------------------------------- patterns

_SPACES = re.compile(r"[ \t]+")
_END_PUNCT = ".!?:;,…"
_CLOSERS = "\"'”’)]»"
_BULLET = re.compile(r"^(?:[•·▪◦●■►✓✔]\s*|[*\-]\s+)")

# Photo agencies and picture desks that end a credit ("Name/AFP/Getty Images", "Name via Reuters").
_AGENCY = (
    r"Getty Images|AP Photo|AP|AFP|Reuters|EPA-EFE|EPA|Shutterstock|Redux|Sipa USA|Sipa|Handout|"
    r"USA TODAY NETWORK|USA TODAY Network|USA Today Network|USA TODAY Sports|USA Today Sports|"
    r"Imagn Images|Imagn Content Services|Imagn|Bloomberg|NurPhoto|Anadolu Agency|Anadolu|"
    r"ZUMA Press|ZUMA Wire|Zuma Press|Alamy|WireImage|FilmMagic|PA Images|PA Wire|Xinhua|Kyodo|Yonhap|"
    r"TASS|Sputnik|The Associated Press|Associated Press|iStockphoto|iStock|CNN"
)
# The end of a credit: "/AGENCY" (repeatable) and/or "via AGENCY", not followed by more of a word.
_CREDIT_TAIL = re.compile(
    rf"(?:\s?/\s?(?:{_AGENCY})(?![\w/]))+(?:\s+via\s+(?:{_AGENCY})(?![\w/]))?|\s+via\s+(?:{_AGENCY})(?![\w/])"
)
# Credits that carry their own label: "(AP Photo/Jane Doe)", "(Photo by X/AFP via Getty Images)".
_CREDIT_PAREN = re.compile(
    r"(?<!\S)\((?:(?:AP|AFP|EPA|Reuters|Getty) )?(?:[Pp]hoto(?:graph)?s?|PHOTO|[Ii]mage|[Cc]redit|[Cc]ourtesy)\b"
    r"[^()\n]{0,120}\)(?!\S)"
)
# "Photo: X", "Credit: X", "Courtesy of X" at the end of a paragraph (or as the whole paragraph).
_CREDIT_LABELLED = re.compile(
    r"(?:^|(?<=[.!?\"”’)]\s))(?:Photo(?:graph)?s?(?: credit)?|Images?|Credit|Illustration)\s*:\s*[^.!?\n]{1,100}$"
    r"|(?:^|(?<=[.!?\"”’)]\s))Courtesy(?: of)? [A-Z][^.!?\n]{0,80}$"
)
_CREDIT_END_WINDOW = 140  # the two patterns above match only within this many characters of the end
# A bare agency name at the end of a paragraph: "... in 1918. Getty Images".
_BARE_CREDITS = ("Getty Images", "Shutterstock", "iStock", "iStockphoto", "AP Photo")
_CREDIT_BARE = re.compile(rf"(?:^|(?<=[.!?\"”’)]\s))(?:{'|'.join(_BARE_CREDITS)})$")
# Lower-case words allowed inside a name or an organisation in a credit.
_NAME_PARTICLES = frozenset(
    "of the and for & de da del della der den van von la le du dos das di y bin ibn al el".split()
)
_INITIAL = re.compile(r"^(?:[A-Z]\.)+$|^(?:Jr|Sr|St|Dr|Mt|Ft)\.$")

# Advertisement markers standing alone.
_ADVERT = re.compile(
    r"^(?:advertisement|advertising|ad|sponsored(?: content)?|skip advertisement|"
    r"story continues below(?: advertisement)?|continue reading below|paid content)$|"
    r"how relevant is this ad to you\??$",
    re.IGNORECASE,
)
# Share buttons rendered as text.
_SHARE = re.compile(
    r"^(?:share (?:this|on|via)\b|email this\b|copy (?:this )?(?:url|link)\b|link copied\b|print this\b|"
    r"tweet this\b)",
    re.IGNORECASE,
)
_HAS_WORD = re.compile(r"[^\W_]")
# Headings of the publisher's author box.
_ABOUT_HEADING = re.compile(
    r"^about (?:the|this) (?:writer|writers|author|authors|reporter|contributors?)$", re.IGNORECASE
)
# Disclaimers about whose views these are (as a sentence; a paragraph of only that goes entirely).
_DISCLAIMER = re.compile(
    r"\b(?:the )?(?:views|opinions)(?: and (?:opinions|views))? expressed (?:in|here|by)\b[^.!?]{0,160}?"
    r"\b(?:own|author|authors|writer|necessarily|solely)\b[^.!?]{0,80}[.!?]?",
    re.IGNORECASE,
)
# A paragraph that starts like a subscription/newsletter/app pitch, or a "click here" line.
_PROMO_START = re.compile(
    r"^(?:sign up|subscribe|register (?:now|today|for free)|get [^.!?\n]{0,60}\b(?:newsletter|app)|"
    r"join (?:our|the conversation)|download (?:the|our) app|to read how)\b",
    re.IGNORECASE,
)
# "Click here" as a call to action: the sentence starts with it, perhaps after a short lead clause
# ("To read more, click here."). A sentence that only mentions the phrase ("Staff were told to click
# here to claim a bonus, investigators said.") is article text.
_CLICK_HERE = re.compile(
    r"^(?:[^,.!?\n]{0,80},\s*)?(?:please\s+|simply\s+|just\s+)?click (?:here|this link|the link below)\b",
    re.IGNORECASE,
)
# Calls to action inside a sentence; such sentences are removed, a paragraph of only them goes entirely.
_PROMO_PHRASE = re.compile(
    r"\bsign up (?:here|now|today|below|for (?:our|free|[^.!?\n]{0,40}\b(?:newsletters?|alerts|emails?))"
    r"|to (?:get|receive))|\bsubscribe (?:here|now|today|for free|to (?:our|the [^.!?\n]{0,30}newsletter))"
    r"|\bdelivered (?:straight |directly )?to your inbox\b|\bsupport (?:our|local) journalism\b"
    r"|\bplease consider (?:a |becoming a )?(?:subscri|paid subscri|member|donat)",
    re.IGNORECASE,
)
# Cheap test for the two patterns above: each needs one of these words (lower-cased).
_PROMO_HINTS = ("click", "sign up", "subscri", "inbox", "journalism", "consider", "expressed")
# Link lists: "Read more:", "Related: ...", "See also", "UP NEXT", "... Read more".
_RELATED = re.compile(
    r"^(?:read more|related(?: stories| articles| coverage| content)?|see also|also read|read also|more|"
    r"recommended(?: reading)?|must read|up next|trending|most popular|watch|listen)\b\s*(?::|$)|"
    r"\bread more\W{0,3}$",
    re.IGNORECASE,
)
# A headline glued to its label: "College Football:After Florida State ..." (no space after the colon).
_LABEL_LINK = re.compile(r"^[A-Z][^:.!?\n]{0,40}(?<!\d):(?=[A-Z])")
# A bullet that sells the publication: delivery, ad-free, apps, comments, newsletters.
_PROMO_BULLET_WORDS = re.compile(
    r"delivered to your door|ad-free|ad free|comment on articles|app updates|on-the-go|subscri|newsletter|"
    r"exclusive (?:content|access|offers)|unlimited (?:access|digital)|digital (?:access|edition)|"
    r"audio opinions|premium|members? only|cancel anytime|print edition|e-edition",
    re.IGNORECASE,
)
# Tag lines that describe the publisher ("Newsweek is committed to ...").
_TAG_LINE = re.compile(r"\bis (?:committed|dedicated) to\b|all rights reserved|©", re.IGNORECASE)
# Sentence boundaries inside a paragraph (for removing promo/disclaimer sentences).
_SENTENCE = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"”’)]))\s+(?=[\"“‘(]?[A-Z0-9])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|St|Jr|Sr|Sen|Rep|Gov|Gen|Lt|Col|Sgt|Capt|Rev|No|vs|etc|Inc|Co|Corp)|"
    r"\b[A-Z]|\b(?:[A-Z]\.)+[A-Z])\.$"
)
_WORD = re.compile(r"\w+")

# A bio or contact line: "<Name> is a fellow at ...", "<Name> may be reached at ..." (never a tag line).
_BIO = re.compile(
    r"^(?:[A-Z][\w'’.-]*,? ){1,5}(?:is|was|has been|writes|covers|reports|may be reached|can be reached)\b"
)
# drop reasons that mark publisher furniture; a section label standing just before one goes too
_FURNITURE = frozenset({"tag line", "promo bullet", "promo header"})


@dataclass
class _Para:
    text: str
    block: int  # paragraphs of one block were separated by a single line break
    drop: str | None = None  # why the whole paragraph is dropped
    caption: bool = False
    fragments: list[str] = field(default_factory=list)  # credits/sentences removed from a kept paragraph
    credits: list[Span] = field(default_factory=list)  # photo credits found in ``text``


def clean(text: str) -> Cleaned:
    """Clean one article's text; see the module docstring for what is kept and what is dropped."""
    if not isinstance(text, str) or not text:
        return Cleaned(text="")
    paras = _paragraphs(text)
    _mark_paragraph_rules(paras)
    _mark_repeats(paras)
    _mark_promo_bullets(paras)
    _mark_section_labels(paras)
    paras = _split_captions(paras)
    _remove_promo_sentences(paras)
    _mark_caption_titles(paras)
    return _assemble(paras)


# ------------------------------------------------------------------------------------------- steps


def _paragraphs(text: str) -> list[_Para]:
    """Normalise whitespace; every non-empty line is a paragraph (a hard-wrapped line is re-joined)."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", text))
    groups: list[tuple[list[str], int]] = []  # the lines of each paragraph, and its block
    block = 0
    previous_blank = True
    for raw in text.splitlines():  # \r\n, \r, \u2028 ... are line breaks
        line = raw.strip()
        if not line:
            if not previous_blank:
                block += 1
            previous_blank = True
            continue
        if not previous_blank and _continues(groups[-1][0], line):
            groups[-1][0].append(line)
        else:
            groups.append(([line], block))
        previous_blank = False
    return [_Para(" ".join(lines), block) for lines, block in groups]


def _continues(lines: list[str], line: str) -> bool:
    """A line broken in the middle of a sentence: the next line goes on in lower case."""
    return (
        line[0].islower()
        and lines[-1][-1] not in ".!?:;…" + _CLOSERS
        and not _BULLET.match(line)
        and not _BULLET.match(lines[0])
    )


def _mark_paragraph_rules(paras: list[_Para]) -> None:
    """Whole-paragraph rules for publisher furniture."""
    for para in paras:
        para.credits = _find_credits(para.text)
        para.drop = _paragraph_rule(para.text, para.credits)


def _paragraph_rule(text: str, credits: list[Span]) -> str | None:
    n = len(text)
    # A credit standing alone: "Getty Images", "Photo: Jane Doe/Reuters", "Jane Doe/AFP via Getty Images".
    if credits == [(0, n)]:
        return "photo credit"
    if n > PROMO_PARAGRAPH:
        return None
    # A subscription or newsletter pitch, or "To read how ... Click here."
    if _PROMO_START.match(text):
        return "promo"
    if n > SHORT_LINE:
        return None
    # "Advertisement" and friends.
    if _ADVERT.match(text):
        return "advertisement"
    # Separators with no words: "___", "* * *", "♦".
    if not _HAS_WORD.search(text):
        return "separator"
    # Share widgets: "Share this story on Facebook", "Copy this url to your clipboard".
    if _SHARE.match(text):
        return "share widget"
    # "About the writer" (the publisher's author box heading; the bio itself is a separate line).
    if _ABOUT_HEADING.match(text):
        return "about heading"
    # "The views expressed in this article are the writer's own."
    if _DISCLAIMER.fullmatch(text):
        return "disclaimer"
    # "Read more:", "Related: <headline>", "<headline> Read more".
    if _RELATED.search(text):
        return "related link"
    # "College Football:After Florida State ..." -- a headline glued to its label, no final full stop.
    if n <= TAG_LINE and _LABEL_LINK.match(text) and not text.endswith("."):
        return "related link"
    return None


def _mark_repeats(paras: list[_Para]) -> None:
    """Paragraphs that occur more than once.

    A tag line (the publisher describing itself, or a short sentence repeated in the furniture after the
    article) goes entirely. A long repeated paragraph keeps its first copy. Short repeats inside the
    article (labels, list items, questionnaire questions: "Party: Democratic", "Status: ...") are
    content and stay where they are.
    """
    counts = Counter(p.text for p in paras)
    if counts and max(counts.values()) < 2:
        return
    # index of the last long paragraph: what follows it is the page's furniture zone
    last_long = max((i for i, p in enumerate(paras) if len(p.text) > SHORT_LINE), default=-1)
    first_seen: set[str] = set()
    for i, para in enumerate(paras):
        text = para.text
        if counts[text] < 2:
            continue
        short_sentence = len(text) <= TAG_LINE and text[-1] in ".!?" and len(text.split()) >= 8 and ":" not in text
        if _TAG_LINE.search(text) or (short_sentence and i > last_long and not _BIO.match(text)):
            para.drop = para.drop or "tag line"
        elif text in first_seen and len(text) > TAG_LINE:
            para.drop = para.drop or "repeated paragraph"
        first_seen.add(text)


def _mark_promo_bullets(paras: list[_Para]) -> None:
    """A run of bullet lines that mostly sells the publication goes, with the short header line above it."""
    i = 0
    while i < len(paras):
        if not _BULLET.match(paras[i].text):
            i += 1
            continue
        j = i
        while j < len(paras) and _BULLET.match(paras[j].text):
            j += 1
        run = paras[i:j]
        promo = [bool(_PROMO_BULLET_WORDS.search(p.text)) for p in run]
        if sum(promo) * 2 >= len(run):
            for para in run:
                para.drop = para.drop or "promo bullet"
            if i > 0 and _is_label(paras[i - 1].text):  # "Newsweek cover", "Subscribe today"
                paras[i - 1].drop = paras[i - 1].drop or "promo header"
        i = j


def _mark_section_labels(paras: list[_Para]) -> None:
    """A short label standing alone just before publisher furniture ("Uncommon Knowledge")."""
    for i in range(len(paras) - 1):
        para, following = paras[i], paras[i + 1]
        if para.drop is None and following.drop in _FURNITURE and _is_label(para.text):
            para.drop = "section label"


def _split_captions(paras: list[_Para]) -> list[_Para]:
    """Remove photo credits; the text a credit ends is a caption and becomes its own paragraph."""
    out: list[_Para] = []
    for para in paras:
        if para.drop is not None:
            if para.drop == "photo credit" and out and out[-1].drop is None and out[-1].block == para.block:
                out[-1].caption = True  # "Caption sentence.\nJane Doe/AP": the credit's own line
            out.append(para)
            continue
        credits = para.credits
        if not credits:
            out.append(para)
            continue
        cursor = 0
        pending: list[str] = []  # credits not yet attached to a kept piece
        for start, end in credits:
            pending.append(para.text[start:end].strip())
            piece = para.text[cursor:start].strip()
            if piece:
                out.append(_Para(piece, para.block, caption=True, fragments=pending))
                pending = []
            cursor = end
        rest = para.text[cursor:].strip()
        if rest:
            out.append(_Para(rest, para.block, fragments=pending))
        elif pending:
            if out and out[-1].block == para.block and out[-1].drop is None:
                out[-1].fragments.extend(pending)
            else:  # nothing but credits: drop them as a paragraph of credits
                out.append(_Para(" ".join(pending), para.block, drop="photo credit"))
    return out


def _remove_promo_sentences(paras: list[_Para]) -> None:
    """Drop disclaimer and call-to-action sentences from kept paragraphs (all of them -> drop the paragraph)."""
    for para in paras:
        if para.drop is not None:
            continue
        lowered = para.text.lower()
        if not any(hint in lowered for hint in _PROMO_HINTS):
            continue
        kept: list[str] = []
        removed: list[str] = []
        for sentence in _sentences(para.text):
            if _is_promo_sentence(sentence):
                removed.append(sentence)
            else:
                kept.append(sentence)
        if not removed:
            continue
        if not kept:
            para.drop = "promo"
        else:
            para.text = " ".join(kept)
            para.fragments.extend(removed)


def _is_promo_sentence(sentence: str) -> bool:
    """A call to action or a disclaimer; a sentence longer than a promo line is article text."""
    if len(sentence) > SHORT_LINE:
        return False
    return bool(_CLICK_HERE.match(sentence) or _PROMO_PHRASE.search(sentence) or _DISCLAIMER.search(sentence))


def _mark_caption_titles(paras: list[_Para]) -> None:
    """A short title-like line just before a caption (the picture's title) is part of the caption."""
    for i in range(1, len(paras)):
        caption, title = paras[i], paras[i - 1]
        if not caption.caption or title.drop is not None or title.caption:
            continue
        text = title.text
        if len(text) > TITLE_LINE_CHARS or text[-1] in _END_PUNCT or not text[0].isupper():
            continue
        if title.block == caption.block or _overlap(text, caption.text) >= 0.5:
            title.caption = True


def _assemble(paras: list[_Para]) -> Cleaned:
    parts: list[str] = []
    captions: list[Span] = []
    dropped: list[str] = []
    offset = 0
    for para in paras:
        if para.drop is not None:
            dropped.append(para.text)
            continue
        dropped.extend(para.fragments)
        if parts:
            offset += 2
        if para.caption:
            captions.append((offset, offset + len(para.text)))
        parts.append(para.text)
        offset += len(para.text)
    return Cleaned(text="\n\n".join(parts), captions=captions, dropped=dropped)


# ------------------------------------------------------------------------------------------- credits


def _find_credits(text: str) -> list[Span]:
    """Spans of photo credits in a paragraph, in order, not overlapping."""
    spans: list[Span] = [m.span() for m in _CREDIT_PAREN.finditer(text)] if "(" in text else []
    for match in _CREDIT_TAIL.finditer(text) if "/" in text or "via " in text else ():
        end = match.end()
        after = text[end : end + 2]
        if after and not (after[0] == " " and len(after) > 1 and not after[1].islower()):
            continue  # "Name/AP said ..." is not a credit: a credit ends the paragraph or a caption
        start = _credit_start(text, match.start())
        if start is not None:
            spans.append((start, end))
    window = max(0, len(text) - _CREDIT_END_WINDOW)
    if ":" in text[window:] or "Courtesy" in text[window:]:
        match = _CREDIT_LABELLED.search(text, window)
        if match:
            spans.append(match.span())
    if text.endswith(_BARE_CREDITS):
        match = _CREDIT_BARE.search(text, window)
        if match:
            spans.append(match.span())
    if not spans:
        return []
    spans.sort()
    merged: list[Span] = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _credit_start(text: str, tail_start: int) -> int | None:
    """Where the names before an agency tail begin ("Dimitar Dilkoff/AFP" -> at "Dimitar"), or None.

    Walks back over "/"-separated parts; each part is a run of capitalised words (particles like "of"
    allowed inside). The walk stops at a word that ends a sentence, a lower-case word or the word limit.
    """
    window_start = max(0, tail_start - CREDIT_LOOKBACK)
    window = text[window_start:tail_start]
    parts = window.rsplit("/", CREDIT_PARTS)  # parts[0] is everything further back
    start: int | None = None
    end = len(window)
    for index in range(len(parts) - 1, -1, -1):
        part = parts[index]
        part_start = end - len(part)
        taken = _trailing_name(part, CREDIT_PART_WORDS)
        if taken is None:
            break
        start = window_start + part_start + taken
        whole = part[:taken].strip() == ""
        if not whole or index == 0:
            break
        end = part_start - 1  # continue before the "/"
    if start is not None and start > 0 and not text[start - 1].isspace():
        return None  # "x/Jane Doe/AP": the names are glued to something else, so this is no credit
    return start


def _trailing_name(part: str, limit: int) -> int | None:
    """Offset in ``part`` where its trailing run of name words starts, or None if there is none."""
    taken: int | None = None
    count = 0
    end = len(part.rstrip(" "))
    while count < limit and end > 0:  # words from the right (spaces are single after normalising)
        start = part.rfind(" ", 0, end) + 1
        word = part[start:end]
        end = start - 1
        if not word:
            continue
        count += 1
        if word in _NAME_PARTICLES:
            continue  # allowed inside a name, never at its start
        if not word[0].isupper() and not word[0].isdigit():
            break
        if word[-1] in _END_PUNCT + _CLOSERS and not _INITIAL.match(word):
            break  # "... World Cup. Alessandro Sabattini/Getty Images": stop at "Cup."
        taken = start
    return taken


# ------------------------------------------------------------------------------------------- helpers


def _sentences(text: str) -> list[str]:
    """Split a paragraph into sentences, not after abbreviations like "Dr." or initials."""
    pieces = _SENTENCE.split(text)
    out = [pieces[0]]
    for piece in pieces[1:]:
        if _ABBREVIATION.search(out[-1][-16:]):
            out[-1] += " " + piece
        else:
            out.append(piece)
    return out


def _is_label(text: str) -> bool:
    """A short standalone label: 1-4 words, no final punctuation, capitalised ("Uncommon Knowledge")."""
    words = text.split()
    return (
        0 < len(words) <= LABEL_WORDS and text[-1] not in _END_PUNCT and text[0].isupper() and not _BULLET.match(text)
    )


def _overlap(title: str, caption: str) -> float:
    """Share of the title's words that occur in the caption."""
    words = {w.lower() for w in _WORD.findall(title)}
    if not words:
        return 0.0
    return len(words & {w.lower() for w in _WORD.findall(caption)}) / len(words)
