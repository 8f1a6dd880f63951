"""A cross-encoder reader (an experiment, not wired into ``make_reader``): MiniLM reads question and sentence together.

It reranks the feature reader's shortlist: the feature reader orders every candidate, then the cross-encoder
scores the best ``shortlist`` of them as (question, sentence) pairs; a sentence's score is the sigmoid of the
cross-encoder's logit. Sentences past the shortlist keep their feature score, capped at the shortlist's lowest,
so the order stays head first. The weights are built by ``python -m service.answering.reading.train_cross_encoder``
into ``<reader_dir>/cross-encoder/``, a cache never committed. On the dev sets it read worse than the feature
reader (``bench/cross_encoder_reader.py``), so it stays out of ``make_reader``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from service.answering.reading.base import CandidateSentence, Question, Reader, sigmoid

CE_DIR = "cross-encoder"
HEAD_FILE = "head.safetensors"


class MeanPoolCrossEncoder(torch.nn.Module):
    """MiniLM over the (question, sentence) pair, mean-pooled as the bi-encoder was trained, then one linear logit."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.config.hidden_size, 1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(str(directory))
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(directory / HEAD_FILE))


def load_model(directory: Path, layers: int | None = None, head: bool = True) -> MeanPoolCrossEncoder:
    """The encoder in ``directory`` (cut to ``layers``) with its trained head, or a fresh head (``head=False``)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(directory), add_pooling_layer=False)
    if layers is not None and layers < encoder.config.num_hidden_layers:
        encoder.encoder.layer = encoder.encoder.layer[:layers]
        encoder.config.num_hidden_layers = layers
    model = MeanPoolCrossEncoder(encoder)
    if head:
        model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
    return model


class CrossEncoderUnavailable(RuntimeError):
    """The cross-encoder's weights are missing or unreadable; the message says how to build them."""


class CrossEncoderScorer:
    """A one-logit sequence classifier over (question, sentence) pairs, on CPU with a fixed thread count."""

    def __init__(self, directory: Path, threads: int = 2, max_length: int = 96) -> None:
        if not (directory / "config.json").exists() or not (directory / HEAD_FILE).exists():
            raise CrossEncoderUnavailable(
                f"no cross-encoder weights in {directory}: build them with "
                "`python -m service.answering.reading.train_cross_encoder --index DIR`"
            )
        from transformers import AutoTokenizer

        self.threads = threads
        self.max_length = max_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
            self.model = load_model(directory)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CrossEncoderUnavailable(f"cross-encoder weights in {directory} unusable: {exc}") from exc
        self.model.eval()
        meta = directory / "trained.json"
        self.trained: dict[str, object] = json.loads(meta.read_text()) if meta.exists() else {}

    def logits(self, question: str, sentences: list[str]) -> list[float]:
        if not sentences:
            return []
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        encoded = self.tokenizer(
            [question] * len(sentences),
            sentences,
            truncation="longest_first",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        with torch.inference_mode():
            out = self.model(**encoded)
        return [float(v) for v in out.reshape(-1)]


class CrossEncoderReader:
    """Reranks ``base``'s best ``shortlist`` candidates by the cross-encoder (``shortlist=None``: all of them)."""

    name = "cross-encoder"

    def __init__(self, scorer: CrossEncoderScorer, base: Reader, shortlist: int | None = 8) -> None:
        self.scorer = scorer
        self.base = base
        self.shortlist = shortlist

    def read(self, question: Question, candidates: list[CandidateSentence]) -> list[CandidateSentence]:
        ranked = self.base.read(question, candidates)
        cut = len(ranked) if self.shortlist is None else self.shortlist
        head, tail = ranked[:cut], ranked[cut:]
        for c, logit in zip(head, self.scorer.logits(question.text, [c.text for c in head]), strict=True):
            c.features["cross_encoder"] = logit
            c.score = sigmoid(logit)
        head.sort(key=lambda c: -c.score)
        floor = head[-1].score if head else 1.0
        for c in tail:
            c.score = min(c.score, floor)
        return head + tail

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "shortlist": self.shortlist, **self.scorer.trained}


def load_cross_encoder_reader(
    weights_dir: Path, base: Reader, shortlist: int | None = 8, threads: int = 2
) -> CrossEncoderReader:
    """The reader over ``<weights_dir>/cross-encoder``; raises :class:`CrossEncoderUnavailable` when absent."""
    return CrossEncoderReader(CrossEncoderScorer(weights_dir / CE_DIR, threads=threads), base, shortlist)
