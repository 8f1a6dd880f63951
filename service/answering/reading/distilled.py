"""The distilled judge (``BYLINE_READER=distilled``): a small cross-encoder trained on the LLM judge's margins.

``reading.judge`` has the local 1.5B LLM say yes or no to each of the feature reader's best sentences: the best
reading signal we have, at ~1.5 s a sentence. ``label_judge`` records its margins on the train split's question
subheadings, ``train_cross_encoder --labels`` regresses a MiniLM cross-encoder on them (``margin-mse``), and
:func:`export` writes it as an int8 ONNX graph beside the weights. :class:`DistilledJudge` runs that graph with
``onnxruntime`` and ``tokenizers`` only (no torch at query time) and estimates the margins the LLM would give.

:class:`DistilledReader` adds the estimate to the feature reader's evidence for its best ``top_n`` sentences: a
sentence's score becomes ``sigmoid(logit(feature score) + weight * (margin + bias))``. The student is less sure
than the LLM, so it adjusts the feature reader's ranking and confidence rather than overruling them (the LLM
judge's hard rule, "no sentence above the bar: abstain", read worse with the student on the dev sets); a
question whose best sentences all look unlikely to state the answer falls below the engine's abstention
threshold.

The weights and the graph are a cache under ``<reader_dir>/distilled/``, never committed (``make reader-distilled``).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from service.answering.reading.base import CandidateSentence, Question, Reader, ReaderUnavailable, logit, sigmoid

DISTILLED_DIR = "distilled"
ONNX_FILE = "judge.int8.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class DistilledUnavailable(ReaderUnavailable):
    """The distilled judge's graph is missing or unreadable; the message says how to build it."""


def export(directory: Path, max_length: int = 128) -> Path:
    """Export the trained cross-encoder in ``directory`` to ONNX and quantize it to int8 (needs torch and onnx)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import PreTrainedTokenizerFast

    from index.onnx_backend import quantizer_warning_silenced, warnings_silenced
    from service.answering.reading.cross_encoder import load_model

    model = load_model(directory).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory), local_files_only=True)
    sample = tokenizer(
        ["a question?", "another question, longer?"],
        ["a short sentence.", "a longer sentence, so that the batch is padded."],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_token_type_ids=True,
        return_tensors="pt",
    )
    fp32 = directory / "judge.onnx"
    with warnings_silenced():
        torch.onnx.export(
            model,
            tuple(sample[name] for name in INPUT_NAMES),
            str(fp32),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=["margin"],
            dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}, "margin": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
        )
    target = directory / ONNX_FILE
    with quantizer_warning_silenced():
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=False)
    fp32.unlink()
    return target


class DistilledJudge:
    """``margins(question, sentences)`` from the int8 graph: the student's estimate of the LLM judge's margin."""

    def __init__(self, directory: Path, threads: int = 1, max_length: int = 128) -> None:
        graph, vocab = directory / ONNX_FILE, directory / "tokenizer.json"
        if not graph.exists() or not vocab.exists():
            raise DistilledUnavailable(
                f'no distilled judge in {directory}: build it with `make reader-distilled` (hours: README "Reading")'
            )
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            self._tokenizer: Any = Tokenizer.from_file(str(vocab))
        except Exception as exc:  # onnxruntime and tokenizers raise plain Exceptions
            raise DistilledUnavailable(f"the distilled judge in {directory} is unusable: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        pad = self._tokenizer.token_to_id("[PAD]")
        self._pad = int(pad) if pad is not None else 0
        meta = directory / "trained.json"
        self.trained: dict[str, object] = json.loads(meta.read_text()) if meta.exists() else {}
        self._lock = threading.Lock()

    def margins(self, question: str, sentences: list[str]) -> list[float]:
        if not sentences:
            return []
        encodings = self._tokenizer.encode_batch([(question, s) for s in sentences])
        width = max(len(e.ids) for e in encodings)
        feeds = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in INPUT_NAMES}
        feeds["input_ids"][:] = self._pad
        for row, e in enumerate(encodings):
            n = len(e.ids)
            feeds["input_ids"][row, :n] = e.ids
            feeds["attention_mask"][row, :n] = 1
            feeds["token_type_ids"][row, :n] = e.type_ids
        with self._lock:
            (out,) = self._session.run(None, feeds)
        return [float(v) for v in np.asarray(out).reshape(-1)]


class DistilledReader:
    """The feature reader's ranking, adjusted on its best ``top_n`` sentences by the distilled judge's margins."""

    def __init__(self, base: Reader, judge: DistilledJudge, top_n: int, weight: float, bias: float) -> None:
        self.base, self.judge = base, judge
        self.top_n, self.weight, self.bias = top_n, weight, bias
        self.name = f"distilled+{base.name}"

    def read(self, question: Question, candidates: list[CandidateSentence]) -> list[CandidateSentence]:
        for c in candidates:
            c.features.pop("judge_margin", None)
        ranked = self.base.read(question, candidates)
        head, tail = ranked[: self.top_n], ranked[self.top_n :]
        if not head:
            return ranked
        for c, margin in zip(head, self.judge.margins(question.text, [c.text for c in head]), strict=True):
            c.features["judge_margin"] = margin
            c.score = sigmoid(logit(c.score) + self.weight * (margin + self.bias))
        head.sort(key=lambda c: -c.score)
        floor = head[-1].score
        for c in tail:
            c.score = min(c.score, floor)
        return head + tail
