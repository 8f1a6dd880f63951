"""Train the feature reader from the corpus itself: ``python -m service.answering.reading.train --index DIR``.

Supervision the articles already hold, no labels by hand:

* **question subheadings** (explainers: "Who is Peter Murrell?" followed by the paragraph that answers it):
  the question is the heading, the answer is the first two sentences after it;
* **cloze questions**: a sentence with a named entity becomes a question by putting the wh-phrase of the
  entity's kind in its place ("... after having spent how many in space?"); the answer is that sentence.

Each question is run through the real retrieval and candidate selection; its candidate sentences become
examples (the answer sentences positive, the rest negative) with exactly the features the service computes.
A linear model is fitted on them with a listwise loss (softmax over each question's candidates).

Split by article: an article is held out when a hash of its id falls in the held-out share (20 %) or when a
dev set points to it (``--dev`` files: evidence strings, RealTimeQA search result urls). Held-out articles give
no question and no candidate. Deterministic for a given index and seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from index.settings import get_settings
from service.answering.answer import prepare
from service.answering.engine import Engine
from service.answering.reading import entities as ner
from service.answering.reading.base import CandidateSentence, Question
from service.answering.reading.features import FEATURES, entity_features
from service.answering.reading.kinds import question_kind
from service.answering.reading.scorer import FeatureReader, ReaderWeights, save_weights
from service.answering.schemas import Filters

HELD_OUT_SHARE = 0.2
SHORTLIST = 24
WH = {
    "CARDINAL": "how many",
    "QUANTITY": "how much",
    "MONEY": "how much money",
    "PERCENT": "what percentage",
    "DATE": "when",
    "PERSON": "who",
    "GPE": "where",
    "LOC": "where",
    "ORG": "which organization",
}


def held_out_by_hash(article_id: str, share: float = HELD_OUT_SHARE) -> bool:
    digest = hashlib.sha256(article_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def dev_articles(engine: Engine, paths: list[Path]) -> set[str]:
    """Articles a dev set points to: by url (RealTimeQA search results) or holding an evidence string."""
    index = engine.index
    by_url = {a.url: a.id for a in index.articles.values() if a.url}
    evidence: list[str] = []
    ids: set[str] = set()
    for path in paths:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            ids.update(by_url[u] for u in record.get("search_result_urls", []) if u in by_url)
            for turn in record.get("turns", []):
                evidence.extend(turn.get("evidence", []))
    if evidence:
        for article_id in index.articles:
            text = index.article_text(article_id) or ""
            if any(e in text for e in evidence):
                ids.add(article_id)
    return ids


def held_out_articles(engine: Engine, dev: list[Path]) -> tuple[frozenset[str], frozenset[str]]:
    """The articles training never sees: the hash split plus every article a dev set points to, and the
    latter on their own (for the report). Every trainer and labeller takes its split from here."""
    dev_ids = frozenset(dev_articles(engine, dev))
    return frozenset({a for a in engine.index.articles if held_out_by_hash(a)} | dev_ids), dev_ids


@dataclass
class Example:
    question: str
    kind: str
    source: str  # heading | cloze
    article_id: str
    positives: set[tuple[str, int]]


def heading_questions(engine: Engine, train: set[str]) -> list[Example]:
    index = engine.index
    out = []
    for article_id in sorted(train):
        chunks = index.chunks_of(article_id)
        spans: dict[tuple[int, int], bool] = {}
        texts: dict[tuple[int, int], str] = {}
        for chunk in chunks:
            headings = set(chunk.headings)
            for span in chunk.sentences:
                spans[span] = span in headings
                texts[span] = chunk.text[span[0] - chunk.start : span[1] - chunk.start]
        ordered = sorted(spans)
        for i, span in enumerate(ordered):
            if not spans[span] or not texts[span].endswith("?"):
                continue
            answers = []
            for following in ordered[i + 1 :]:
                if spans[following] or len(answers) == 2:
                    break
                answers.append(following)
            if answers:
                out.append(
                    Example(
                        texts[span],
                        question_kind(texts[span]),
                        "heading",
                        article_id,
                        {(article_id, a[0]) for a in answers},
                    )
                )
    return out


def cloze_questions(engine: Engine, train: set[str], limit: int, rng: random.Random) -> list[Example]:
    index = engine.index
    pool = []
    for article_id in sorted(train):
        for chunk in index.chunks_of(article_id):
            headings = set(chunk.headings)
            for span in chunk.sentences:
                text = chunk.text[span[0] - chunk.start : span[1] - chunk.start]
                if span not in headings and 8 <= len(text.split()) <= 40 and text.endswith("."):
                    pool.append((article_id, span[0], text))
    rng.shuffle(pool)
    pool = list(dict.fromkeys(pool))[: limit * 3]
    out = []
    for (article_id, start, text), found in zip(pool, ner.entities([p[2] for p in pool]), strict=True):
        usable = [e for e in found if e[2] in WH and e[0] > 0]
        if not usable:
            continue
        e_start, e_end, label = rng.choice(usable)
        question = f"{text[:e_start]}{WH[label]}{text[e_end:]}".rstrip(" .") + "?"
        out.append(Example(question, question_kind(question), "cloze", article_id, {(article_id, start)}))
        if len(out) == limit:
            break
    return out


def example_candidates(
    engine: Engine, example: Example, held_out: frozenset[str], require_answer: bool = True
) -> tuple[Question, list[CandidateSentence]]:
    """A training question's candidates, with features, from the real retrieval (held-out articles left out);
    none when its answer is not among them (unless ``require_answer`` is false)."""
    candidates, _, vector = engine._retrieve(engine.index, example.question, 10, Filters(), dt.date.today(), None)
    asked, sentences = prepare(
        engine.index,
        example.question,
        vector,
        candidates,
        engine.settings,
        engine.sentence_cache,
        keep=lambda s: s.article_id not in held_out,
    )
    if require_answer and not any((s.article_id, s.start) in example.positives for s in sentences):
        return asked, []
    return asked, sentences


def featurize(
    engine: Engine, examples: list[Example], held_out: frozenset[str]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    rows, labels, groups = [], [], []
    for number, example in enumerate(examples):
        asked, sentences = example_candidates(engine, example, held_out)
        if not sentences:
            continue
        # the service reads a shortlist: train on the candidates a first pass ranks high (and the answers)
        first_pass = FeatureReader(None).read(asked, sentences)
        sentences = [
            s for i, s in enumerate(first_pass) if i < SHORTLIST or (s.article_id, s.start) in example.positives
        ]
        entity_features(asked, sentences)
        for s in sentences:
            rows.append([s.features[name] for name in FEATURES])
            labels.append(1.0 if (s.article_id, s.start) in example.positives else 0.0)
            groups.append(number)
    return np.array(rows), np.array(labels), groups


def fit(x: np.ndarray, y: np.ndarray, groups: list[int], l2: float = 1.0) -> tuple[np.ndarray, float]:
    """A listwise fit: per question, a softmax over its candidates should put its mass on the answer sentences
    (the log of their summed probability), plus an L2 penalty. Ranking is what the reader is for; the bias is
    then set so that the best candidates of training questions score about 0.5 (the abstention threshold is
    calibrated on its own, eval/calibrate.py)."""
    bounds = np.flatnonzero(np.diff(np.array(groups))) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(groups)]])
    slices = [slice(a, b) for a, b in zip(starts, ends, strict=True)]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros_like(w)
        for part in slices:
            xs, ys = x[part], y[part]
            z = xs @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            mass = float((p * ys).sum())
            total -= np.log(mass + 1e-12)
            grad += -(xs.T @ (p * ys)) / (mass + 1e-12) + xs.T @ p
        n = len(slices)
        return total / n + l2 * float(w @ w) / n, grad / n + 2 * l2 * w / n

    w = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x
    best = [float((x[part] @ w).max()) for part in slices]
    return w, -float(np.median(best))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.answering.reading.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--dev", type=Path, nargs="*", default=[], help="dev sets whose articles are held out")
    parser.add_argument("--out", type=Path, default=None, help="weights directory (default: settings.reader_dir)")
    parser.add_argument("--cloze", type=int, default=800, help="cloze questions to make")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    settings = get_settings().model_copy(update={"reader": "features-untrained"})
    engine = Engine(settings=settings, index_root=args.index)
    rng = random.Random(args.seed)
    held_out, dev = held_out_articles(engine, args.dev)
    train = set(engine.index.articles) - held_out
    examples = heading_questions(engine, train)
    n_heading = len(examples)
    examples += cloze_questions(engine, train, args.cloze, rng)
    print(
        f"articles: {len(train)} train, {len(held_out)} held out ({len(dev)} pointed to by dev sets)", file=sys.stderr
    )
    print(f"questions: {n_heading} subheadings, {len(examples) - n_heading} cloze", file=sys.stderr)
    x, y, groups = featurize(engine, examples, held_out)
    w, b = fit(x, y, groups)
    seconds = time.perf_counter() - started
    weights = ReaderWeights(
        features=list(FEATURES),
        weights=[round(float(v), 5) for v in w],
        bias=round(b, 5),
        trained={
            "source": "corpus: subheading and cloze questions",
            "index_version": engine.index.version,
            "questions": len(set(groups)),
            "examples": int(len(y)),
            "positives": int(y.sum()),
            "train_articles": len(train),
            "held_out_articles": len(held_out),
            "seed": args.seed,
            "seconds": round(seconds, 1),
            "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    path = save_weights(args.out or settings.reader_dir, weights)
    for name, value in zip(FEATURES, w, strict=True):
        print(f"  {name:>14} {value:+.3f}", file=sys.stderr)
    print(f"  {'bias':>14} {b:+.3f}", file=sys.stderr)
    print(f"wrote {path}: {len(set(groups))} questions, {len(y)} examples, {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
