"""An opt-in follow-up rewriter for ``FollowupResolver(rewriter=...)``: the local Qwen2.5-Coder-Instruct via llama.cpp.

``BYLINE_FOLLOWUP_REWRITER=llm`` turns it on (the default, ``none``, keeps the spaCy resolution alone). The model
sees the last two turns (question and short answer) and the follow-up, and writes the follow-up as a question
that stands on its own. Its question is used only when it keeps every word of the user's own question (pronouns
aside) and every word it adds comes from the history; anything else, a timeout or an error leaves the spaCy
resolution in place. Model: ``settings.llm_reader_model`` from its part wheels (``reading.llm_model``).
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from index.settings import Settings
from service.answering.followup import PERSON_PRONOUNS, PLURAL_PRONOUNS, THING_PRONOUNS, HistoryTurn, Resolution
from service.answering.reading.llm_model import ModelUnavailable, model_path

SYSTEM = "You rewrite follow-up questions so they can be understood alone. You never answer them."
EXAMPLES = [  # (history, follow-up, rewrite): shown to the model as earlier chat turns
    ("Q: Who founded Apple?\nA: Steve Jobs", "Where was he born?", "Where was Steve Jobs born?"),
    ("Q: How much did the city spend on the Harbor Bridge?\nA: $40 million", "When will it open?",
     "When will the Harbor Bridge open?"),
]  # fmt: skip
_WORD = re.compile(r"[\w\u00C0-\u024F-]+")
FREE = {"the", "a", "an", "of", "s", "in", "on", "at", "to", "for", "and", "by", "with", "from", "about", "that"}
POINTERS = PERSON_PRONOUNS | THING_PRONOUNS | PLURAL_PRONOUNS | {"that", "this", "those", "these", "there"}


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def acceptable(question: str, rewritten: str, history: Sequence[HistoryTurn]) -> bool:
    """Adds a name, keeps the question's own words (pronouns aside) and adds only words found in the history."""
    if not rewritten or len(rewritten) > 3 * len(question) + 120 or "\n" in rewritten:
        return False
    own, new = _words(question), _words(rewritten)
    known = set().union(*(_words(f"{t.searched} {t.short_answer} {t.answer_text}") for t in history))
    added = new - own
    return bool(added - FREE) and own - POINTERS - {"and", "but", "so", "also"} <= new and added <= known | FREE


class LlmRewriter:
    """The model behind a lock (one llama.cpp context); ``last_seconds`` is the last call's time."""

    def __init__(self, settings: Settings) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelUnavailable("the llm follow-up rewriter needs llama-cpp-python: run `make .venv/.llm-installed`")
        import llama_cpp

        path = model_path(settings.llm_reader_model, settings.cache_dir)
        threads = settings.llm_reader_threads
        self._llm: Any = llama_cpp.Llama(
            model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        self._lock = threading.Lock()
        self.last_seconds = 0.0

    def __call__(self, question: str, history: Sequence[HistoryTurn], resolution: Resolution) -> str | None:
        lines = [f"Q: {t.searched}\nA: {t.short_answer or t.answer_text[:200] or '(no answer)'}" for t in history[-2:]]
        messages = [{"role": "system", "content": SYSTEM}]
        for shown, follow, rewrite in [*EXAMPLES, ("\n".join(lines), question, None)]:
            messages.append({"role": "user", "content": f"{shown}\nFollow-up: {follow}\nStandalone question:"})
            if rewrite:
                messages.append({"role": "assistant", "content": rewrite})
        with self._lock:
            started = time.perf_counter()
            try:
                out = self._llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=48, stop=["\n"])
            finally:
                self.last_seconds = time.perf_counter() - started
        rewritten = " ".join((out["choices"][0]["message"]["content"] or "").split()).strip("\"' ")
        return rewritten if acceptable(question, rewritten, history) else None


def make_rewriter(settings: Settings) -> LlmRewriter | None:
    """The rewriter ``settings.followup_rewriter`` asks for (None for ``none``)."""
    return LlmRewriter(settings) if settings.followup_rewriter == "llm" else None
