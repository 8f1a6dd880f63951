"""The opt-in "judge" reader (``BYLINE_READER=llm-judge``): the local LLM says whether a sentence states the answer.

The default :class:`~service.answering.reading.scorer.FeatureReader` ranks every candidate first. For each of
its best ``settings.llm_judge_candidates`` sentences, the local Qwen2.5-Coder-Instruct (``llm_reader_model``,
1.5B by default) reads one prompt, "Question: ... Sentence: ... Does the sentence state the answer to the
question?", and we read the logits of its first reply token: the *margin* ``logit("Yes") - logit("No")``. Nothing
is generated, so a sentence costs one prompt pass, and the prompt's head (instruction and question) is evaluated
once per question (llama.cpp keeps it in its KV cache): about 1.2-1.5 s a sentence with the 1.5B on 2 cores.

What the margins decide (measured on the dev sets: README "Reading"):

* no judged sentence reaches ``llm_judge_min_margin``: no sentence is shown to state the answer, so every score
  is multiplied by ``llm_reader_none_factor`` (flagged ``judge_none``) and the service abstains;
* otherwise the judged sentences that reach it move ahead of those that do not, each keeping its feature order
  and its feature score (so the engine's threshold still applies: lifting the best to a floor of 0.9 answered
  more and read worse, news 0.711 vs 0.748 in the replay of recorded margins).

Every judged sentence carries its margin in ``features["judge_margin"]``. A failed call leaves the feature order.
The sentence is data: angle brackets are neutralised and a sentence that addresses instructions to an AI is
withheld from the model (judged as not stating anything), as in ``reading.llm``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from index.settings import Settings
from service.answering.generate import _INSTRUCTION_LIKE, _data
from service.answering.reading.base import CandidateSentence, Question, Reader
from service.answering.reading.llm_model import ModelUnavailable, model_path, require_llama_cpp

log = logging.getLogger("byline.reading")

# The margins were calibrated with exactly this prompt (a sentence more in it moves them by +0.4..0.8).
SYSTEM = "You check whether a sentence from a news article states the answer to a question. Reply yes or no."
ASK = "Does the sentence state the answer to the question? Reply yes or no."
MAX_SENTENCE_CHARS = 600
JUDGE_FEATURES = ("judge_margin", "judge_none")
WITHHELD_MARGIN = -20.0  # a withheld sentence states nothing


def prompt_parts(question: str, sentence: str) -> tuple[str, str]:
    """The prompt in ChatML (Qwen's chat format), split where the sentence begins: the head is shared by every
    sentence of one question, so llama.cpp evaluates it once."""
    head = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nQuestion: {_data(question)}\nSentence: "
    tail = f"{_data(sentence[:MAX_SENTENCE_CHARS])}\n{ASK}<|im_end|>\n<|im_start|>assistant\n"
    return head, tail


class Judge:
    """One llama.cpp context that gives yes/no margins; one call at a time."""

    def __init__(self, path: Path, threads: int) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        self._yes = self._token("Yes")
        self._no = self._token("No")
        self._lock = threading.Lock()

    def _token(self, word: str) -> int:
        tokens = self._llm.tokenize(word.encode(), add_bos=False)
        if len(tokens) != 1:
            raise ModelUnavailable(f"the judge needs {word!r} to be one token of the model's vocabulary")
        return int(tokens[0])

    def margins(self, question: str, sentences: list[str]) -> list[float]:
        """``logit(Yes) - logit(No)`` of the reply to each (question, sentence) prompt."""
        out = []
        with self._lock:
            for sentence in sentences:
                if _INSTRUCTION_LIKE.search(sentence):
                    out.append(WITHHELD_MARGIN)
                    continue
                head, tail = prompt_parts(question, sentence)
                out.append(self._margin(self._tokens(head + tail)))
        return out

    def _tokens(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=True))

    def _margin(self, tokens: list[int]) -> float:
        llm = self._llm
        if len(tokens) > llm.n_ctx():
            tokens = tokens[-llm.n_ctx() :]
        # keep what the context already holds of this prompt (the shared head), evaluate the rest
        held = llm.input_ids[: llm.n_tokens].tolist()
        common = 0
        limit = min(len(held), len(tokens) - 1)  # at least one token is evaluated, for its logits
        while common < limit and held[common] == tokens[common]:
            common += 1
        llm.n_tokens = common
        llm.eval(tokens[common:])
        logits = np.ctypeslib.as_array(self._llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        return float(logits[self._yes] - logits[self._no])


class JudgeReader:
    """Feature ranking first, then the LLM's yes/no margin on the best ``top_n`` (see the module docstring)."""

    def __init__(self, base: Reader, settings: Settings, judge: Judge | None = None) -> None:
        if judge is None:
            require_llama_cpp("llm-judge")
        self.base = base
        self.top_n = settings.llm_judge_candidates
        self.min_margin = settings.llm_judge_min_margin
        self.none_factor = settings.llm_reader_none_factor
        self.size = settings.llm_reader_model
        self.name = f"llm-judge-{self.size}+{base.name}"
        self.last_seconds = 0.0  # time of the last judging (for benchmarks)
        self.judge = judge or Judge(model_path(self.size, settings.cache_dir), settings.llm_reader_threads)

    def read(self, question: Question, candidates: list[CandidateSentence]) -> list[CandidateSentence]:
        for c in candidates:
            for key in JUDGE_FEATURES:
                c.features.pop(key, None)
        ranked = self.base.read(question, candidates)
        head = ranked[: self.top_n]
        self.last_seconds = 0.0
        if not head:
            return ranked
        started = time.perf_counter()
        try:
            margins = self.judge.margins(question.text, [c.text for c in head])
        except Exception as exc:  # a model failure must not fail the question: the feature order stands
            log.warning("llm-judge reader failed (%s): keeping the feature order", exc)
            return ranked
        finally:
            self.last_seconds = time.perf_counter() - started
        for c, margin in zip(head, margins, strict=True):
            c.features["judge_margin"] = margin
        stating = [c for c in head if c.features["judge_margin"] >= self.min_margin]
        if not stating:
            for c in ranked:
                c.score *= self.none_factor
                c.features["judge_none"] = 1.0
            return ranked
        rest = [c for c in ranked if c not in stating]
        return stating + rest
