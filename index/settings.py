"""One typed settings object for the whole product, read from ``BYLINE_*`` variables and ``.env``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Everything runs offline: model and tokenizer files come from installed packages only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BYLINE_", env_file=".env", extra="ignore")

    # --- index location and build ---
    index_dir: Path = Field(default=PROJECT_ROOT / "data" / "index", description="Root of the on-disk index.")
    keep_versions: int = Field(default=3, ge=1, description="Published index versions kept on disk.")
    cache_dir: Path = Field(default=PROJECT_ROOT / "data" / "cache", description="Tokenizer files unpacked here.")

    # --- models ---
    embedding_backend: str = Field(
        default="onnx-int8",
        description="torch | onnx | onnx-int8 (ONNX: a local export of the packaged weights, index/onnx_backend.py).",
    )
    embed_batch_size: int = Field(
        default=8,
        ge=1,
        description="Passages per encoder call at ingest. Small batches pad less: onnx-int8 on 2 cores embedded "
        "125 corpus chunks/s at 8, 119 at 16, 113 at 32 (one run, same 1,536 chunks).",
    )
    encoder_threads: int = Field(default=0, ge=0, description="Encoder threads; 0 = one per core.")
    tokenizer_encoding: str = Field(default="cl100k_base", description="tiktoken encoding for sizes.")

    # --- ingest on Ray (byline ingest --engine ray; ingest/ray_engine.py) ---
    ray_embed_actors: int = Field(
        default=2, ge=1, description="Actors in the Ray engine's embedding (and chunking) pools: one per worker CPU."
    )
    ray_cpus_per_actor: float = Field(
        default=1.0, gt=0, description="CPUs Ray reserves per actor; also the actor's encoder threads (at least 1)."
    )

    # --- chunking ---
    chunk_target_tokens: int = Field(default=200, ge=32, description="Aim for chunks this long (tiktoken).")
    chunk_max_tokens: int = Field(default=300, ge=32, description="Never longer than this (tiktoken).")
    chunk_overlap_sentences: int = Field(default=1, ge=0)

    # --- vector index ---
    ann_threshold: int = Field(
        default=200_000,
        ge=1,
        description="Chunks above which an approximate (HNSW) index replaces exact search.",
    )
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_construction: int = Field(default=80, ge=8)
    hnsw_ef_search: int = Field(default=128, ge=8)

    # --- retrieval ---
    dense_k: int = Field(default=100, ge=1, description="Dense candidates fed to fusion.")
    bm25_k: int = Field(default=100, ge=1, description="BM25 candidates fed to fusion.")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(default=1.0, ge=0)
    bm25_weight: float = Field(default=1.0, ge=0)
    max_passages_per_article: int = Field(
        default=6,
        ge=1,
        description="Cap per article in the final passages (RealTimeQA dev Hits@10, caps 3/4/6/10: 0.276/0.293/"
        "0.301/0.301 on the full corpus; 17/18/20/20 of 123 on its first 300 articles).",
    )
    recency_weight: float = Field(default=0.5, ge=0, description="Boost for recent articles, in RRF units.")
    recency_half_life_days: float = Field(default=30.0, gt=0)
    preference_bonus: float = Field(
        default=0.3, ge=0, description="Boost for a publication or period the question names, in RRF units."
    )
    conversation_bonus: float = Field(default=0.5, ge=0, description="Boost for articles cited earlier.")
    followup_context_weight: float = Field(
        default=0.5, ge=0, description="Weight of a follow-up's earlier questions in its search vector."
    )
    followup_read_context_weight: float = Field(
        default=0.3,
        ge=0,
        description="Weight of a follow-up's earlier questions in the question vector the reader's cosine uses "
        "(only where the resolver is unsure; word overlap stays on the question).",
    )
    followup_rewriter: str = Field(
        default="none",
        pattern="^(none|llm)$",
        description="Follow-up rewriter after spaCy's resolution: none | llm (local Qwen, opt-in; see followup_llm).",
    )
    rerank_depth: int = Field(default=30, ge=1, description="Fused candidates the rerank stage reorders.")
    rerank_weight: float = Field(default=0.5, ge=0, le=1, description="Share of the rerank score in the final one.")
    default_k: int = Field(default=10, ge=1, le=100)
    rerank: str = Field(default="none", description="Rerank stage over fused candidates: none | sentence.")

    # --- answers ---
    answer_max_sentences: int = Field(default=4, ge=1, le=10)
    answer_passages: int = Field(default=8, ge=1, description="Top passages whose sentences are considered.")
    answer_dense_sentences: int = Field(default=40, ge=1, description="Sentences scored with the encoder.")
    answer_relative_cutoff: float = Field(
        default=0.8, gt=0, le=1, description="Keep sentences whose reader score is >= the best one's x this."
    )
    reader: str = Field(
        default="features",
        description="Reading stage: features (hand-set weights) | features-trained (make reader's weights from "
        "reader_dir) | llm (the local LLM picks among the top sentences; slow) | llm-judge (the local LLM says "
        "whether each top sentence states the answer; the accurate abstention, ~4 s a question) | distilled (a "
        "cross-encoder trained on the llm-judge's margins reads the top sentences; make reader-distilled).",
    )
    reader_dir: Path = Field(
        default=PROJECT_ROOT / "data" / "reader", description="Trained reader weights (make reader)."
    )
    abstain_threshold: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="Abstain when the best sentence's reader score is below this. On the news dev set's written "
        "questions 0.5 / 0.6 / 0.7 abstain on 1 / 1 / 3 % of answerable turns and on 20 / 20 / 33 % of unanswerable "
        "ones (eval.reader_study); 0.7 costs the chat's follow-ups 5 points (0.70 -> 0.65, byline eval).",
    )
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible server for generated answers.")
    llm_model: str = "default"
    llm_api_key: str = "none"
    llm_timeout_s: float = Field(
        default=30.0, gt=0, description="Total deadline of one language-model call (connect, wait, read)."
    )
    llm_max_reply_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="A language-model reply larger than this is refused."
    )
    llm_reader_model: str = Field(
        default="1.5b", description="Local Qwen2.5-Coder-Instruct of the llm reader: 1.5b | 0.5b (part wheels)."
    )
    llm_reader_threads: int = Field(default=1, ge=1, le=64, description="llama.cpp threads of the llm reader.")
    llm_reader_candidates: int = Field(
        default=6, ge=1, le=20, description="Top feature-ranked sentences the llm reader shows the model."
    )
    llm_reader_floor: float = Field(
        default=0.9, ge=0, le=1, description="Score of the sentence the llm reader picks: max(feature score, this)."
    )
    llm_judge_candidates: int = Field(
        default=3, ge=1, le=10, description="Top feature-ranked sentences the llm-judge reader has the model judge."
    )
    llm_judge_min_margin: float = Field(
        default=-1.5,
        ge=-20,
        le=20,
        description="logit(Yes) - logit(No) a judged sentence needs to count as stating the answer (llm-judge).",
    )
    distilled_candidates: int = Field(
        default=5, ge=1, le=20, description="Top feature-ranked sentences the distilled judge reads (reader=distilled)."
    )
    distilled_weight: float = Field(
        default=0.5, ge=0, le=10, description="Weight of the distilled judge's margin in a sentence's score."
    )
    distilled_bias: float = Field(
        default=1.5,
        ge=-10,
        le=10,
        description="Added to the distilled judge's margin: score = sigmoid(logit(feature score) + weight * "
        "(margin + bias)).",
    )
    distilled_threads: int = Field(default=1, ge=1, le=64, description="onnxruntime threads of the distilled judge.")
    llm_reader_none_factor: float = Field(
        default=0.5, ge=0, le=1, description="When the model says no sentence answers, every score is x this."
    )

    # --- service ---
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_per_minute: int = Field(default=120, ge=1)
    max_question_chars: int = Field(default=2000, ge=1)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    history_max_tokens: int = Field(default=2000, ge=100)

    # --- conversations ---
    conversation_store: str = Field(
        default="",
        description="Where conversations live: empty = <index_dir>/conversations.sqlite; postgresql://user:pw@host/db "
        "(shared by replicas; needs the postgres extra); sqlite:///path = a SQLite file elsewhere.",
    )
    conversation_pool_size: int = Field(default=4, ge=1, description="PostgreSQL connections per process.")
    conversation_pool_timeout_s: float = Field(
        default=5.0, gt=0, description="Wait for a PostgreSQL connection this long, then answer 503."
    )
    conversation_max_turns: int = Field(
        default=200, ge=1, description="Turns per conversation; a follow-up past this gets 409."
    )
    conversation_idle_expiry_s: float = Field(
        default=30 * 86400.0, ge=0, description="A conversation idle this long is deleted (0 = never)."
    )
    conversation_page_size: int = Field(default=20, ge=1, description="Turns per GET /v1/conversations/{id} page.")
    conversation_max_page_size: int = Field(default=100, ge=1, description="Largest `limit` a page request may ask.")
    reload_check_s: float = Field(default=2.0, gt=0, description="How often the service looks for a new index.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy addresses whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or "
        "networks); empty: forwarded headers are ignored and the peer address is the client.",
    )
    http_request_timeout_s: float = Field(
        default=10.0, gt=0, description="A request's headers and body must arrive within this (else closed)."
    )
    http_keepalive_timeout_s: float = Field(default=5.0, gt=0, description="Idle keep-alive connections closed after.")
    http_max_connections: int = Field(
        default=1000, ge=1, description="Open connections above which new requests get 503 (uvicorn limit_concurrency)."
    )

    @field_validator("cors_origins", "api_keys", "trusted_proxies", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
