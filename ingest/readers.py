"""Turn files into :class:`index.models.RawArticle` objects.

Supported: ``.txt``, ``.md``/``.markdown`` (optional YAML front matter), ``.html``/``.htm`` (main text
by trafilatura), ``.json`` (one object or a list of objects) and ``.jsonl`` (one object a line, streamed).
Nothing here raises on bad input: whatever cannot be read yields a :class:`Skipped` with a reason.
Text is decoded as UTF-8 (a BOM is allowed) and normalised to NFC, and otherwise left alone: removing
boilerplate is the cleaner's job.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from index.models import RawArticle

DEFAULT_MAX_BYTES = 20_000_000
_SNIFF_BYTES = 8192  # how much of a streamed file is checked for NUL bytes before reading it line by line
_LONG_TITLE = 300  # a .txt "first line" longer than this is a paragraph, not a title


# Characters that must not reach a terminal or a report raw: C0/C1 controls and DEL (newlines, ANSI
# escapes), line and paragraph separators, bidirectional overrides, and lone surrogates (undecodable
# bytes in a file name), which could not even be printed.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ``\\u202e``): one line, safe to print."""
    return _UNPRINTABLE.sub(lambda m: _ESCAPES.get(m[0]) or _escape(m[0]), str(text))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


@dataclass(frozen=True)
class Skipped:
    """Something that was not turned into an article, and why."""

    origin: str
    reason: str

    def __str__(self) -> str:
        return printable(f"{self.origin}: {self.reason}")


Item = RawArticle | Skipped


class _Skip(Exception):
    """Raised inside a reader to turn the current file or record into a :class:`Skipped`."""


# ---------------------------------------------------------------------------------------------- walking


def iter_articles(paths: Iterable[Path], max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
    """Yield one :class:`RawArticle` per article found in ``paths``, or a :class:`Skipped` per failure.

    Directories are walked recursively in sorted order; hidden files and directories are ignored there.
    ``max_bytes`` bounds a single-article file (txt, md, html, json) and a single JSONL line.
    """
    for raw_path in paths:
        path = Path(raw_path)
        try:
            if path.is_dir():
                yield from _walk(path, max_bytes)
            elif os.path.lexists(path):
                yield from _read_file(path, max_bytes)
            else:
                yield Skipped(str(path), "missing path: no such file or directory")
        except PermissionError:
            yield Skipped(str(path), "permission denied")
        except OSError as exc:
            yield Skipped(str(path), f"unreadable: {exc.strerror or exc}")


def _walk(directory: Path, max_bytes: int) -> Iterator[Item]:
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except PermissionError:
        yield Skipped(str(directory), "permission denied")
        return
    except OSError as exc:
        yield Skipped(str(directory), f"unreadable directory: {exc.strerror or exc}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            # Symlinked directories are not followed (no loops); symlinked files are read.
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(path, max_bytes)
        else:
            yield from _read_file(path, max_bytes)


def _read_file(path: Path, max_bytes: int) -> Iterator[Item]:
    origin = str(path)
    ext = path.suffix.lower()
    reader = _READERS.get(ext)
    if reader is None and ext != ".jsonl":
        reason = f"unsupported extension {ext!r}" if ext else "unsupported file: no extension"
        yield Skipped(origin, reason)
        return
    try:
        size = path.stat().st_size
        if not path.is_file():
            yield Skipped(origin, "not a regular file")
            return
        if size == 0:
            yield Skipped(origin, "empty file")
            return
        if ext == ".jsonl":
            yield from _read_jsonl(path, max_bytes)
            return
        if size > max_bytes:
            yield Skipped(origin, f"file too large: {size} bytes > max_bytes {max_bytes}")
            return
        data = path.read_bytes()
    except PermissionError:
        yield Skipped(origin, "permission denied")
        return
    except FileNotFoundError:
        yield Skipped(origin, "missing path: no such file or directory (or a broken link)")
        return
    except OSError as exc:
        yield Skipped(origin, f"unreadable: {exc.strerror or exc}")
        return
    try:
        text = _decode(data)
        if not text.strip():
            yield Skipped(origin, "empty file (whitespace only)")
            return
        assert reader is not None
        yield from reader(path, text)
    except _Skip as skip:
        yield Skipped(origin, str(skip))
    except Exception as exc:  # a reader bug or a library failure must not stop the whole ingest
        yield Skipped(origin, f"could not read: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------- helpers


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) to NFC text; NUL bytes or invalid UTF-8 mean a binary file."""
    if b"\x00" in data:
        raise _Skip("binary file (contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Skip(f"binary or undecodable file: not valid UTF-8 (byte {exc.start})") from None
    return _nfc(text)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _clean_str(value: Any) -> str | None:
    """A stripped NFC string from a scalar field, or None for missing/empty/non-scalar values."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = _nfc(value).strip()
    return value or None


def _text_field(value: Any) -> str | None:
    """Article text: kept as written (no stripping inside), None when missing or blank."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _nfc(value)


_AUTHOR_SPLIT = re.compile(r"\s*(?:;|,|\band\b|&)\s*", re.IGNORECASE)
_BY_PREFIX = re.compile(r"^by\s+", re.IGNORECASE)


def _split_authors(value: Any) -> list[str]:
    """``["A", "B"]`` or ``"A, B and C"`` -> a list of names (no duplicates, order kept)."""
    if isinstance(value, list | tuple):
        parts = [p for item in value for p in _split_authors(item)] if value else []
    elif isinstance(value, str):
        parts = [_BY_PREFIX.sub("", p.strip()) for p in _AUTHOR_SPLIT.split(_nfc(value))]
    else:
        return []
    seen: list[str] = []
    for part in parts:
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    return seen


_DATE_PREFIX = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def _parse_date(value: Any) -> date | None:
    """``YYYY-MM-DD``, an ISO datetime (``Z`` allowed) or a date object; anything else is None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    value = value.strip()
    try:
        return datetime.fromisoformat(value).date()
    except ValueError:
        pass
    match = _DATE_PREFIX.match(value)
    if match:
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return None
    return None


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host[4:] if host.startswith("www.") else host


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, "", []):
            return value
    return None


def _from_record(record: Any, origin: str, fmt: str) -> Item:
    """A JSON object (also Markdown front matter shape) -> RawArticle, or Skipped with the reason."""
    if not isinstance(record, dict):
        return Skipped(origin, f"not a JSON object (got {type(record).__name__})")
    title = _clean_str(record.get("title"))
    text = _text_field(_first(record, "text", "body"))
    if title is None and text is None:
        return Skipped(origin, "record has no title and no text")
    if title is None:
        return Skipped(origin, "record has no title")
    if text is None:
        return Skipped(origin, "record has no text (neither 'text' nor 'body')")
    url = _clean_str(record.get("url"))
    authors = _split_authors(_first(record, "authors", "author"))
    article = RawArticle(
        title=title,
        text=text,
        origin=origin,
        format=fmt,
        id=_clean_str(record.get("id")),
        url=url,
        authors=authors,
        published=_parse_date(_first(record, "published", "published_at", "date")),
        source=_clean_str(record.get("source")) or _host(url),
        section=_clean_str(record.get("section")),
    )
    fields = (article.title, article.text, article.id, article.url, article.source, article.section, *article.authors)
    if not all(_encodable(value) for value in fields):
        return Skipped(origin, "invalid text: a lone UTF-16 surrogate (such as \\ud800) in a JSON string")
    return article


def _encodable(value: str | None) -> bool:
    """False for text holding a lone surrogate (JSON allows ``"\\ud800"``; UTF-8, hashing and SQLite do not)."""
    try:
        (value or "").encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- formats

# A trailing section label on a title line: " | " then 1-3 capitalised words, e.g. "... | Opinion".
_SECTION_SUFFIX = re.compile(r"^(?P<title>.*\S)\s+\|\s+(?P<section>[A-Z][\w'’&.-]*(?: [A-Z][\w'’&.-]*){0,2})$")


def _split_section(title: str) -> tuple[str, str | None]:
    match = _SECTION_SUFFIX.match(title)
    if match:
        return match["title"].strip(), match["section"]
    return title, None


def _read_txt(path: Path, text: str) -> Iterator[Item]:
    lines = text.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.strip())  # the file is not blank
    first = lines[index].strip()
    if len(first) > _LONG_TITLE:
        # No title line: the file starts with a paragraph. Name the article after the file.
        title, body = path.stem.replace("_", " ").replace("-", " ").strip() or path.name, text
        section = None
    else:
        title, section = _split_section(first)
        body = "".join(lines[index + 1 :])
    if not body.strip():
        raise _Skip("no text after the title line")
    yield RawArticle(title=title, text=body.strip("\r\n"), origin=str(path), format="txt", section=section)


# Markdown, stripped lightly so the stored text reads as prose. Each rule: (pattern, replacement).
_MD_FENCE = re.compile(r"^\s*(?:```|~~~).*$", re.MULTILINE)  # code fence lines (the code itself stays)
_MD_H1 = re.compile(r"^#(?!#)[ \t]+(?P<title>.+?)[ \t#]*$", re.MULTILINE)  # an ATX level-1 heading
_MD_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # images, inline or by reference: removed entirely
    (re.compile(r"!\[[^\]\n]*\](?:\([^)\n]*\)|\[[^\]\n]*\])"), ""),
    # link reference definitions: "[1]: https://..."
    (re.compile(r"^[ \t]{0,3}\[[^\]\n]+\]:[ \t]+\S+.*$\n?", re.MULTILINE), ""),
    # inline and reference links: [text](url), [text][ref] -> text
    (re.compile(r"\[([^\]\n]+)\](?:\([^)\n]*\)|\[[^\]\n]*\])"), r"\1"),
    # autolinks: <https://example.com> -> https://example.com
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),
    # ATX heading hashes (and closing hashes)
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", re.MULTILINE), r"\1"),
    # setext underlines and horizontal rules: lines of only = - * _
    (re.compile(r"^[ \t]{0,3}(?:=+|(?:[-*_][ \t]*){3,})[ \t]*$", re.MULTILINE), ""),
    # blockquote markers
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.MULTILINE), ""),
    # "* item" / "+ item" bullets -> "- item" (so the emphasis rule cannot eat them)
    (re.compile(r"^([ \t]*)[*+][ \t]+", re.MULTILINE), r"\1- "),
    # strong / emphasis / strikethrough markers around text
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),
    # inline code backticks
    (re.compile(r"`([^`\n]+)`"), r"\1"),
    # backslash escapes
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])"), r"\1"),
]


def strip_markdown(text: str) -> str:
    """Markdown to readable prose: drop images and syntax, keep the words."""
    text = _MD_FENCE.sub("", text)
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _read_markdown(path: Path, text: str) -> Iterator[Item]:
    import frontmatter  # python-frontmatter; imported here so other formats do not pay for YAML

    try:
        post = frontmatter.loads(text)
    except Exception as exc:  # yaml.YAMLError and friends
        raise _Skip(f"invalid YAML front matter: {type(exc).__name__}") from None
    meta: dict[str, Any] = dict(post.metadata) if isinstance(post.metadata, dict) else {}
    body = post.content
    title = _clean_str(meta.get("title"))
    heading = _MD_H1.search(body)
    if heading:
        heading_text = strip_markdown(heading["title"]).strip()
        if title is None or (heading_text.casefold() == title.casefold() and not body[: heading.start()].strip()):
            # the heading is the title (or repeats the front matter's title): not part of the text
            title = title or heading_text or None
            body = body[: heading.start()] + body[heading.end() :]
    if title is None:
        lines = body.strip().splitlines()
        if lines:
            title = strip_markdown(lines[0]).strip() or None
            body = "\n".join(lines[1:])
    if title is None:
        raise _Skip("no title: no front matter title, no '# heading' and no text")
    record = {**meta, "title": title, "text": strip_markdown(body)}
    item = _from_record(record, str(path), "md")
    if isinstance(item, Skipped):
        raise _Skip(item.reason.replace("record has", "article has"))
    yield item


def _read_html(path: Path, text: str) -> Iterator[Item]:
    import trafilatura  # heavy import; only when there is HTML to read

    body = trafilatura.extract(
        text, output_format="txt", include_comments=False, include_tables=False, favor_precision=True
    )
    meta = trafilatura.extract_metadata(text)
    title = _clean_str(getattr(meta, "title", None))
    if not body or not body.strip():
        raise _Skip("no article text found in the HTML")
    if title is None:
        raise _Skip("no title found in the HTML")
    body = _nfc(body)
    first, _, rest = body.partition("\n")
    if first.strip() == title and rest.strip():
        body = rest  # trafilatura repeats the headline as the first line
    url = _clean_str(getattr(meta, "url", None))
    categories = getattr(meta, "categories", None) or []
    yield RawArticle(
        title=title,
        text=body,
        origin=str(path),
        format="html",
        url=url,
        authors=_split_authors(getattr(meta, "author", None)),
        published=_parse_date(getattr(meta, "date", None)),
        source=_clean_str(getattr(meta, "sitename", None)) or _host(url) or _clean_str(getattr(meta, "hostname", None)),
        section=_clean_str(categories[0]) if categories else None,
    )


def _read_json(path: Path, text: str) -> Iterator[Item]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Skip(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(data, dict):
        yield _from_record(data, str(path), "json")
    elif isinstance(data, list):
        if not data:
            raise _Skip("empty JSON list")
        for index, record in enumerate(data):
            yield _from_record(record, f"{path}#{index}", "json")
    else:
        raise _Skip(f"JSON is neither an object nor a list (got {type(data).__name__})")


def _read_jsonl(path: Path, max_bytes: int) -> Iterator[Item]:
    """Stream a JSONL file line by line; a bad line is skipped and the others still load."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
        if b"\x00" in head:
            yield Skipped(str(path), "binary file (contains NUL bytes)")
            return
        handle.seek(0)
        number = 0
        records = 0  # non-blank lines seen
        while True:
            line = handle.readline(max_bytes + 1)
            if not line:
                break
            number += 1
            origin = f"{path}:{number}"
            if len(line) > max_bytes and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the over-long line
                    line = handle.readline(1 << 20)
                yield Skipped(origin, f"line {number} too large: over max_bytes {max_bytes}")
                continue
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            records += 1
            try:
                record = json.loads(_decode(line))
            except _Skip as skip:
                yield Skipped(origin, f"line {number}: {skip}")
                continue
            except json.JSONDecodeError as exc:
                yield Skipped(origin, f"invalid JSON on line {number}: {exc.msg} (column {exc.colno})")
                continue
            except RecursionError:
                yield Skipped(origin, f"invalid JSON on line {number}: nested too deeply")
                continue
            try:
                yield _from_record(record, origin, "jsonl")
            except Exception as exc:
                yield Skipped(origin, f"line {number}: could not read: {type(exc).__name__}: {exc}")
        if records == 0:
            yield Skipped(str(path), "empty file (whitespace only)")


_READERS: dict[str, Callable[[Path, str], Iterator[Item]]] = {
    ".txt": _read_txt,
    ".md": _read_markdown,
    ".markdown": _read_markdown,
    ".html": _read_html,
    ".htm": _read_html,
    ".json": _read_json,
}  # .jsonl is streamed by _read_jsonl instead
