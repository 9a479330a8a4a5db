"""Prometheus metrics of one app: its own registry, so several apps can live in one process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from qa.batching import QuestionBatcher
from qa.index import Index

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, batcher: QuestionBatcher) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, fds
        self.registry.register(_BatchingCollector(batcher))
        self.requests = Counter(
            "verbatim_requests",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "verbatim_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "verbatim_answers", "Answers by status", ["status"], registry=self.registry
        )
        self.documents = Gauge(
            "verbatim_index_documents", "Documents in the index", registry=self.registry
        )
        self.chunks = Gauge("verbatim_index_chunks", "Chunks in the index", registry=self.registry)
        self.in_flight = Gauge(
            "verbatim_questions_in_flight",
            "Questions being answered or waiting for a worker",
            registry=self.registry,
        )
        self.ready = Gauge(
            "verbatim_ready", "1 when the model and index are loaded", registry=self.registry
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_index(self, index: Index) -> None:
        self.documents.set(len(index.entries))
        self.chunks.set(len(index.chunk_store))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _BatchingCollector(Collector):
    """Micro-batching's counts, read from the batcher when scraped: batched questions divided
    by batches is the mean batch under load (questions answered alone count in neither)."""

    def __init__(self, batcher: QuestionBatcher) -> None:
        self.batcher = batcher

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "verbatim_question_batches",
            "Batches of questions read together",
            value=self.batcher.batches,
        )
        yield CounterMetricFamily(
            "verbatim_batched_questions",
            "Questions read in those batches",
            value=self.batcher.batched,
        )
