"""Prometheus metrics of one app, in a registry of its own (several apps may live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.answering.schemas import Answer


class Metrics:
    """Request, stage and index metrics; the index gauges read ``index_size`` and ``ready`` when scraped."""

    def __init__(self, index_size: Callable[[], tuple[int, int]], ready: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "byline_http_requests", "HTTP requests by route and status.", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "byline_http_request_seconds", "HTTP request latency by route (until the last byte).",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        stage_buckets = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
        self.retrieval = Histogram(
            "byline_retrieval_seconds", "Retrieval time per question.", registry=self.registry, buckets=stage_buckets
        )
        self.answer = Histogram(
            "byline_answer_seconds", "Answer composition time per question.", registry=self.registry,
            buckets=stage_buckets,
        )  # fmt: skip
        self.abstentions = Counter(
            "byline_abstentions", "Questions answered with an abstention.", registry=self.registry
        )
        self.reloads = Counter("byline_index_reloads", "Index versions loaded while serving.", registry=self.registry)
        Gauge("byline_index_chunks", "Chunks in the served index version.", registry=self.registry).set_function(
            lambda: index_size()[1]
        )
        Gauge("byline_index_articles", "Articles in the served index version.", registry=self.registry).set_function(
            lambda: index_size()[0]
        )
        Gauge(
            "byline_ready", "1 when an index is loaded and questions are answered.", registry=self.registry
        ).set_function(lambda: 1.0 if ready() else 0.0)

    def observe_answer(self, answer: Answer) -> None:
        self.retrieval.observe(answer.timings.retrieval_ms / 1000)
        self.answer.observe(answer.timings.answer_ms / 1000)
        if answer.abstained:
            self.abstentions.inc()
