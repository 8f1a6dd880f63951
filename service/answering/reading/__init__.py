"""The reading stage: which candidate sentences answer the question, how sure that is, and the short answer.

``base`` holds the interface (:class:`Reader`), ``kinds`` what a question asks for, ``features`` the evidence
per sentence, ``entities`` spaCy's named entities, ``scorer`` the default feature reader (hand-set weights, or
trained ones), ``short_answer`` the exact answer span, ``train`` how ``make reader`` fits weights on questions the
corpus holds, ``llm`` / ``llm_model`` the opt-in LLM reader (copies a span), ``judge`` the opt-in LLM judge
(yes or no per sentence: the accurate abstention), ``label_judge`` / ``train_cross_encoder --labels`` /
``distilled`` a cross-encoder trained on the judge's margins (opt-in), ``cross_encoder`` its PyTorch model (trained
on the corpus's own subheadings and cloze questions it read worse, and is not offered by :func:`make_reader`).
"""

from __future__ import annotations

from pathlib import Path

from index.settings import Settings, get_settings
from service.answering.reading.base import CandidateSentence, Question, Reader
from service.answering.reading.scorer import FeatureReader, load_weights

__all__ = ["CandidateSentence", "Question", "Reader", "make_reader"]


def make_reader(name: str, weights_dir: Path, settings: Settings | None = None) -> Reader:
    """``features`` (default): the feature reader with its hand-set weights (on our dev sets they beat the weights
    trained from the corpus: see README "Reading").
    ``features-trained`` (opt-in): the weights ``make reader`` trains into ``weights_dir``; an error if absent.
    ``llm`` (opt-in): the features reader, then the local LLM picks among its top sentences (``reading.llm``);
    ``llm-judge`` (opt-in): the features reader, then the local LLM says yes or no to each of its top sentences
    (``reading.judge``). Both raise ``ModelUnavailable`` naming what is missing (llama-cpp-python or the model's
    part wheels).
    ``distilled`` (opt-in): the same judging by a small cross-encoder trained on the LLM judge's margins
    (``reading.distilled``, ``make reader-distilled``); raises ``DistilledUnavailable`` when its graph is absent."""
    if name in ("features", "features-untrained"):
        return FeatureReader(None)
    if name == "features-trained":
        weights = load_weights(weights_dir)
        if weights is None:
            raise ValueError(f"no usable trained reader weights in {weights_dir}: run `make reader`")
        return FeatureReader(weights)
    if name == "llm":
        from service.answering.reading.llm import LLMReader

        return LLMReader(make_reader("features", weights_dir), settings or get_settings())
    if name == "llm-judge":
        from service.answering.reading.judge import JudgeReader

        return JudgeReader(make_reader("features", weights_dir), settings or get_settings())
    if name == "distilled":
        from service.answering.reading.distilled import DISTILLED_DIR, DistilledJudge, DistilledReader

        settings = settings or get_settings()
        judge = DistilledJudge(weights_dir / DISTILLED_DIR, threads=settings.distilled_threads)
        return DistilledReader(
            make_reader("features", weights_dir),
            judge,
            settings.distilled_candidates,
            settings.distilled_weight,
            settings.distilled_bias,
        )
    raise ValueError(f"unknown reader {name!r} (features | features-trained | llm | llm-judge | distilled)")
