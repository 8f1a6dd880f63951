"""Ingest wall time against the bare encoder on exactly the same chunk texts, in one process and one run.

    .venv/bin/python bench/ingest.py --subset 300      # quick: the first 300 articles of the news corpus
    .venv/bin/python bench/ingest.py                   # full: news corpus + seed + samples (as make ingest-news)

The ingest (``run_ingest``, default settings, a fresh temporary index directory) runs with an encoder wrapper that
records every ``embed`` call (texts and batch size) and replays it on the bare encoder right beside the original
(``--replay interleaved``, the default: both see the same load from other processes; the replay time is taken out
of the ingest's wall time), or all after the ingest (``--replay after``). The ratio ingest / encoder-only is the
overhead of reading, cleaning, chunking, writing and publishing (target: <= 1.15). ``--rounds`` repeats it, each
ingest into a new directory. Peak RSS is the process's ``ru_maxrss`` (encoder and model included).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import CORPUS, SAMPLES, SEED, machine_line, peak_rss_mb, rss_mb, table, write_outputs

from index.encoder import Encoder, get_encoder
from index.settings import get_settings
from ingest.job import EMBED_BLOCK, run_ingest

TARGET_RATIO = 1.15


class RecordingEncoder:
    """Delegates to an encoder and records every ``embed`` call.

    With ``interleave`` each call is also replayed on the bare encoder right beside it (replay first on every other
    call), so the ingest's embedding and the encoder-only time see the same load; the replay time is kept apart
    (``replay_s``) and taken out of the ingest's wall time.
    """

    def __init__(self, inner: Encoder, interleave: bool) -> None:
        self._inner = inner
        self.interleave = interleave
        self.calls: list[tuple[list[str], int]] = []
        self.embed_s = 0.0
        self.replay_s = 0.0

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        texts = list(texts)
        replay_first = self.interleave and len(self.calls) % 2 == 1
        self.calls.append((texts, batch_size))
        if replay_first:
            self._replay(texts, batch_size)
        started = time.perf_counter()
        out = self._inner.embed(texts, batch_size)
        self.embed_s += time.perf_counter() - started
        if self.interleave and not replay_first:
            self._replay(texts, batch_size)
        return out

    def _replay(self, texts: list[str], batch_size: int) -> None:
        started = time.perf_counter()
        self._inner.embed(texts, batch_size)
        self.replay_s += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=0, help="first N news articles only (0: full corpus + seed)")
    parser.add_argument("--rounds", type=int, default=1, help="ingest / encoder-only pairs")
    parser.add_argument(
        "--replay",
        choices=["interleaved", "after"],
        default="interleaved",
        help="encoder-only replay beside each embed call (default), or all of it after the ingest",
    )
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    print(machine_line(), flush=True)
    settings = get_settings()
    encoder = get_encoder()
    # Warm up on one full block of passage-like inputs of mixed lengths: ONNX Runtime grows its buffers for each
    # new shape on first sight, so a short warm-up would leave that cost inside the first timed embeds.
    with CORPUS.open(encoding="utf-8") as handle:
        words = " ".join(json.loads(line).get("text", "") for line in itertools.islice(handle, 200)).split()
    lengths = itertools.cycle(range(40, 260, 20))
    warm_texts, offset = [], 0
    while len(warm_texts) < EMBED_BLOCK and offset < len(words):
        size = next(lengths)
        warm_texts.append(" ".join(words[offset : offset + size]))
        offset += size
    encoder.embed(warm_texts, settings.embed_batch_size)
    rss_ready = rss_mb()
    peak_ready = peak_rss_mb()

    with tempfile.TemporaryDirectory(prefix="byline-ingest-bench-") as scratch:
        scratch_dir = Path(scratch)
        if args.subset:
            subset = scratch_dir / f"news-first-{args.subset}.jsonl"
            with CORPUS.open(encoding="utf-8") as src, subset.open("w", encoding="utf-8") as dst:
                dst.writelines(itertools.islice((line for line in src if line.strip()), args.subset))
            paths = [subset]
            label = f"first {args.subset} articles of {CORPUS.name}"
        else:
            paths = [CORPUS, SEED, SAMPLES]
            label = f"{CORPUS.name} + seed + samples (make ingest-news)"
        rounds = []
        for round_no in range(args.rounds):
            recorder = RecordingEncoder(encoder, interleave=args.replay == "interleaved")
            root = scratch_dir / f"index-{round_no}"
            summary = run_ingest(paths, index_root=root, settings=settings, encoder=recorder, progress=False)  # type: ignore[arg-type]
            peak_ingest = peak_rss_mb()
            if args.replay == "after":
                for texts, batch_size in recorder.calls:
                    recorder._replay(texts, batch_size)
                ingest_s = summary.seconds
            else:
                ingest_s = summary.seconds - recorder.replay_s  # the replays ran inside the ingest's clock
            encoder_s = recorder.replay_s
            summary.seconds = ingest_s
            n_texts = sum(len(t) for t, _ in recorder.calls)
            row = {
                "round": round_no + 1,
                "articles": summary.articles_total,
                "chunks": summary.chunks_embedded,
                "ingest_s": summary.seconds,
                "ingest_embed_s": recorder.embed_s,
                "ingest_other_s": summary.seconds - recorder.embed_s,
                "encoder_only_s": encoder_s,
                "ratio": summary.seconds / encoder_s if encoder_s else float("nan"),
                # the non-embedding work over the bare encoder: insensitive to load swings during the two embeds
                "overhead_ratio": (encoder_s + summary.seconds - recorder.embed_s) / encoder_s
                if encoder_s
                else float("nan"),
                "chunks_per_s": summary.chunks_per_second,
                "encoder_chunks_per_s": n_texts / encoder_s if encoder_s else float("nan"),
                "peak_rss_mb": peak_ingest,
                "batch_size": sorted({b for _, b in recorder.calls}),
                "embed_calls": len(recorder.calls),
            }
            rounds.append(row)
            print(
                f"round {round_no + 1}: ingest {row['ingest_s']:.1f} s (embedding {row['ingest_embed_s']:.1f} s), "
                f"encoder only {encoder_s:.1f} s, ratio {row['ratio']:.3f}",
                flush=True,
            )

    ratio = statistics.median(r["ratio"] for r in rounds)
    overhead = statistics.median(r["overhead_ratio"] for r in rounds)
    notes = [
        f"input: {label}; default settings (backend {settings.embedding_backend}, batch "
        f"{rounds[0]['batch_size']}, {rounds[0]['embed_calls']} embed calls); fresh temporary index per round; "
        f"encoder-only = the same calls replayed on the bare encoder, {args.replay}"
        + (" (beside each call, alternating which runs first)" if args.replay == "interleaved" else ""),
        f"RSS with the encoder loaded and warm, before ingest: {rss_ready:.0f} MB (peak so far {peak_ready:.0f} MB)",
    ]
    rows = [
        [
            r["round"],
            r["articles"],
            r["chunks"],
            r["ingest_s"],
            r["ingest_embed_s"],
            r["ingest_other_s"],
            r["encoder_only_s"],
            f"{r['ratio']:.3f}x",
            f"{r['overhead_ratio']:.3f}x",
            r["chunks_per_s"],
            r["encoder_chunks_per_s"],
            r["peak_rss_mb"],
        ]
        for r in rounds
    ]
    verdict = (
        f"Target ingest <= {TARGET_RATIO:.2f} x encoder-only: **{'met' if ratio <= TARGET_RATIO else 'MISSED'}** "
        f"(median ratio {ratio:.3f}; non-embedding work alone adds {100 * (overhead - 1):.1f}% to the bare "
        f"encoder, so the rest of any gap is the two embeds timing differently under load). "
        f"Load average at end {os.getloadavg()[0]:.1f}."
    )
    markdown = "\n".join(
        [
            "### Ingest vs encoder-only (same chunk texts, same batches)",
            "",
            *[f"- {note}" for note in notes],
            "",
            table(
                [
                    "round",
                    "articles",
                    "chunks",
                    "ingest s",
                    "of which embed s",
                    "other s",
                    "encoder-only s",
                    "ingest / encoder",
                    "(encoder + other) / encoder",
                    "ingest chunks/s",
                    "encoder chunks/s",
                    "peak RSS MB",
                ],
                rows,
            ),
            "",
            verdict,
        ]
    )
    write_outputs(markdown, {"notes": notes, "rounds": rounds, "ratio": ratio, "verdict": verdict}, args.md, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
