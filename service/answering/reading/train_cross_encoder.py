"""Train the cross-encoder reader: ``python -m service.answering.reading.train_cross_encoder --index DIR``.

Supervision is ``reading.train``'s (question subheadings and cloze questions over the train split only:
hash-held-out articles and every article a ``--dev`` set points to give no question and no candidate). Each
question goes through the real retrieval and candidate selection; its answer sentences are positives, and the
other candidates of the same question are hard negatives: the ``--hard`` best by the hand-set feature reader
(the shortlist the cross-encoder will rerank) plus ``--easy`` random others.

The model starts from the packaged all-MiniLM-L6-v2 weights (``index.encoder.model_path()``), optionally cut to
its first ``--layers`` layers, with a one-logit head, and is fine-tuned with binary cross-entropy (AdamW, linear
warm-up and decay, fixed seed). The weights go to ``<reader_dir>/cross-encoder/`` (a cache, never committed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from index.settings import get_settings

CE_DIR = "cross-encoder"
PAIRS_FILE = "pairs.jsonl"
META_FILE = "trained.json"


@dataclass(frozen=True)
class Pair:
    question: str
    sentence: str
    label: float
    article_id: str
    source: str  # heading | cloze


def build_pairs(
    index_root: Path, dev: list[Path], cloze: int, seed: int, hard: int, easy: int, questions: int | None = None
) -> tuple[list[Pair], dict[str, int]]:
    """(question, candidate sentence, label) pairs from the train split, with counts for the report.

    ``questions``: stop after that many usable questions, taken in a seeded shuffle of all of them."""
    from service.answering.engine import Engine
    from service.answering.reading.scorer import FeatureReader
    from service.answering.reading.train import (
        cloze_questions,
        example_candidates,
        heading_questions,
        held_out_articles,
    )

    settings = get_settings().model_copy(update={"reader": "features-untrained"})
    engine = Engine(settings=settings, index_root=index_root)
    index = engine.index
    rng = random.Random(seed)
    held_out, dev_ids = held_out_articles(engine, dev)
    train = set(index.articles) - held_out
    examples = heading_questions(engine, train)
    n_heading = len(examples)
    examples += cloze_questions(engine, train, cloze, rng)
    order = list(examples)
    if questions is not None:
        rng.shuffle(order)
    first = FeatureReader(None)
    pairs: list[Pair] = []
    used = {"heading": 0, "cloze": 0}
    for example in order:
        if questions is not None and sum(used.values()) >= questions:
            break
        asked, sentences = example_candidates(engine, example, held_out)
        if not sentences:
            continue
        ranked = first.read(asked, sentences)
        positives = [s for s in ranked if (s.article_id, s.start) in example.positives]
        negatives = [s for s in ranked if (s.article_id, s.start) not in example.positives]
        chosen = negatives[:hard]
        rest = negatives[hard:]
        chosen += rng.sample(rest, min(easy, len(rest)))
        used[example.source] += 1
        for s, label in [(p, 1.0) for p in positives] + [(n, 0.0) for n in chosen]:
            pairs.append(Pair(example.question, s.text, label, s.article_id, example.source))
    counts = {
        "train_articles": len(train),
        "held_out_articles": len(held_out),
        "dev_articles": len(dev_ids),
        "heading_questions": n_heading,
        "cloze_questions": len(examples) - n_heading,
        "questions_used_heading": used["heading"],
        "questions_used_cloze": used["cloze"],
        "pairs": len(pairs),
        "positives": sum(int(p.label) for p in pairs),
    }
    return pairs, counts


def judge_pairs(path: Path, exclude: frozenset[str] = frozenset()) -> list[Pair]:
    """Pairs from ``label_judge``'s file: every judged sentence with the judge's margin as its label. A question
    from an ``exclude``d article gives nothing, nor does a sentence of one (the file may predate a dev set)."""
    pairs = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["article_id"] in exclude:
            continue
        for c in row["candidates"]:
            if c["article_id"] not in exclude:
                pairs.append(Pair(row["question"], c["text"], float(c["margin"]), c["article_id"], "judge"))
    return pairs


def save_pairs(path: Path, pairs: list[Pair]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for p in pairs:
            handle.write(json.dumps(p.__dict__) + "\n")


def load_pairs(path: Path) -> list[Pair]:
    return [Pair(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def train(
    pairs: list[Pair],
    out: Path,
    *,
    base: Path | None = None,
    layers: int = 6,
    max_length: int = 96,
    batch_size: int = 16,
    epochs: int = 1,
    lr: float = 5e-5,
    seed: int = 13,
    threads: int = 2,
    max_steps: int | None = None,
    log_every: int = 50,
    loss_kind: str = "listwise",
    clip: float = 8.0,
) -> dict[str, object]:
    """Fine-tune a one-logit cross-encoder on ``pairs`` and save it (model + tokenizer + trained.json) to ``out``.

    A batch is whole questions (about ``batch_size`` pairs). ``listwise`` (labels 0/1): each question's answer
    sentences must win a softmax over its candidates (a pointwise loss collapsed to the prior here).
    ``margin-mse`` (labels = the LLM judge's margins, clipped to +-``clip``): the logit is regressed on the margin,
    so the student's output reads on the judge's scale and the judge's threshold carries over."""
    import torch
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    from index.encoder import model_path
    from service.answering.reading.cross_encoder import load_model

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    base = base or model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = load_model(base, layers, head=False)
    grouped: dict[str, list[Pair]] = {}
    for p in pairs:
        grouped.setdefault(p.question, []).append(p)
    if loss_kind == "listwise":
        groups = [g for g in grouped.values() if any(p.label for p in g) and not all(p.label for p in g)]
    else:
        groups = list(grouped.values())
    per_batch = max(1, round(batch_size / (len(pairs) / max(1, len(grouped)))))
    order = list(range(len(groups)))
    steps_per_epoch = (len(groups) + per_batch - 1) // per_batch
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    optimizer = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": lr},
            {"params": model.head.parameters(), "lr": lr * 10},
        ],
        weight_decay=0.01,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, total // 10), max(1, total))
    model.train()
    started = time.perf_counter()
    step, running = 0, 0.0
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in range(0, len(order), per_batch):
            if step >= total:
                break
            chosen = [groups[j] for j in order[i : i + per_batch]]
            batch = [p for g in chosen for p in g]
            encoded = tokenizer(
                [p.question for p in batch],
                [p.sentence for p in batch],
                truncation="longest_first",
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            logits = model(**encoded)
            if loss_kind == "listwise":
                labels = torch.tensor([p.label for p in batch], dtype=torch.bool)
                losses, at = [], 0
                for g in chosen:
                    z, y = logits[at : at + len(g)], labels[at : at + len(g)]
                    losses.append(torch.logsumexp(z, 0) - torch.logsumexp(z[y], 0))
                    at += len(g)
                loss = torch.stack(losses).mean()
            else:
                target = torch.tensor([p.label for p in batch]).clamp(-clip, clip)
                loss = torch.nn.functional.mse_loss(logits, target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            running += loss.item()
            if log_every and step % log_every == 0:
                elapsed = time.perf_counter() - started
                print(f"  step {step}/{total} loss {running / log_every:.4f} {elapsed:.0f} s", file=sys.stderr)
                running = 0.0
    seconds = time.perf_counter() - started
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(out)
    tokenizer.save_pretrained(str(out))
    meta: dict[str, object] = {
        "base": "sentence-transformers/all-MiniLM-L6-v2 (packaged)",
        "layers": layers,
        "max_length": max_length,
        "batch_size": batch_size,
        "epochs": epochs,
        "steps": step,
        "lr": lr,
        "seed": seed,
        "threads": threads,
        "loss": "listwise softmax per question" if loss_kind == "listwise" else f"MSE on judge margins (clip {clip})",
        "questions": len(groups),
        "pairs": len(pairs),
        "positives": sum(p.label > 0 for p in pairs),
        "train_seconds": round(seconds, 1),
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.answering.reading.train_cross_encoder", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--dev", type=Path, nargs="*", default=[], help="dev sets whose articles are held out")
    parser.add_argument("--out", type=Path, default=None, help="default: <settings.reader_dir>/cross-encoder")
    parser.add_argument("--pairs", type=Path, default=None, help="reuse (or write) the training pairs here")
    parser.add_argument("--cloze", type=int, default=1500, help="cloze questions to make")
    parser.add_argument("--questions", type=int, default=700, help="usable questions to train on (0 = all)")
    parser.add_argument("--hard", type=int, default=3, help="negatives per question from the feature shortlist")
    parser.add_argument("--easy", type=int, default=1, help="random other negatives per question")
    parser.add_argument("--layers", type=int, default=3, help="keep MiniLM's first N layers (6 = all)")
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=8e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--labels", type=Path, default=None, help="train on label_judge's margins (margin-mse) instead of pairs"
    )
    args = parser.parse_args(argv)
    out = args.out or get_settings().reader_dir / CE_DIR
    pairs_path = args.pairs or out / PAIRS_FILE
    started = time.perf_counter()
    counts: dict[str, int] = {}
    if args.labels is not None:
        from service.answering.engine import Engine
        from service.answering.reading.train import held_out_articles

        settings = get_settings().model_copy(update={"reader": "features"})
        held_out, _ = held_out_articles(Engine(settings=settings, index_root=args.index), args.dev)
        pairs = judge_pairs(args.labels, held_out)
        counts = {"held_out_articles": len(held_out), "questions_used_judge": len({p.question for p in pairs})}
        print(f"{len(pairs)} judged pairs from {args.labels} ({len(held_out)} articles held out)", file=sys.stderr)
    elif args.pairs is not None and pairs_path.exists():
        pairs = load_pairs(pairs_path)
        print(f"reusing {len(pairs)} pairs from {pairs_path}", file=sys.stderr)
    else:
        pairs, counts = build_pairs(
            args.index, args.dev, args.cloze, args.seed, args.hard, args.easy, args.questions or None
        )
        save_pairs(pairs_path, pairs)
        print(f"pairs built in {time.perf_counter() - started:.0f} s: {json.dumps(counts)}", file=sys.stderr)
    meta = train(
        pairs,
        out,
        layers=args.layers,
        max_length=args.max_length,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        max_steps=args.max_steps,
        loss_kind="listwise" if args.labels is None else "margin-mse",
    )
    meta.update(counts)
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    if args.labels is not None:  # the distilled judge is served from its int8 graph (reading.distilled)
        from service.answering.reading.distilled import export

        print(f"exported {export(out, args.max_length)}", file=sys.stderr)
    print(f"wrote {out}: {meta['pairs']} pairs, {meta['steps']} steps, {meta['train_seconds']} s training")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
