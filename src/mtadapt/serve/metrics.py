"""Prometheus metrics of one server (its own registry, so tests can run several in a process).

    mtadapt_requests_total{route, code}          every answered request, by status code
    mtadapt_request_seconds{route}               latency histogram, arrival to answer
    mtadapt_sentences_total{adapter}             sentences translated, per adapter
    mtadapt_adapter_requests_total{adapter}      translation requests, per adapter
    mtadapt_tokens_total{side}                   source and target tokens
    mtadapt_queue_depth                          sentences waiting for the worker
    mtadapt_batch_sentences / mtadapt_batch_requests   batch-size histograms
    mtadapt_batch_seconds                        generation time per batch
    mtadapt_batch_failures_total                 batches that raised (then retried one by one)
    mtadapt_adapters_loaded, mtadapt_adapter_loads, mtadapt_adapter_evictions (since start)
    mtadapt_adapter_engine_info{adapter, engine, precision}   1 per registered adapter (and
                                                 __base__): which engine serves it, in what
    mtadapt_placeholder_problems_total{kind}     placeholders not kept exactly once (missing,
                                                 duplicated, unexpected, unprotected) and HTML
                                                 segments whose inline markup was lost (markup)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_SECOND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The server's metrics; `render()` gives the text exposition format."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("mtadapt_requests", "Answered requests by route and status code", ["route", "code"], registry=r)
        self.latency = Histogram("mtadapt_request_seconds", "Request latency", ["route"], buckets=_SECOND_BUCKETS, registry=r)
        self.sentences = Counter("mtadapt_sentences", "Sentences translated", ["adapter"], registry=r)
        self.adapter_requests = Counter("mtadapt_adapter_requests", "Translation requests", ["adapter"], registry=r)
        self.tokens = Counter("mtadapt_tokens", "Tokens", ["side"], registry=r)
        self.depth = Gauge("mtadapt_queue_depth", "Sentences waiting for the generation worker", registry=r)
        self.batch_sentences = Histogram("mtadapt_batch_sentences", "Sentences per batch", buckets=_SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("mtadapt_batch_requests", "Requests per batch", buckets=_SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("mtadapt_batch_seconds", "Generation time per batch", buckets=_SECOND_BUCKETS, registry=r)
        self.batch_failures = Counter("mtadapt_batch_failures", "Batches that raised", registry=r)
        self.adapters_loaded = Gauge("mtadapt_adapters_loaded", "Adapters in memory", registry=r)
        self.adapter_loads = Gauge("mtadapt_adapter_loads", "Adapter loads since start", registry=r)
        self.adapter_evictions = Gauge("mtadapt_adapter_evictions", "LRU evictions since start", registry=r)
        self.adapter_engine = Gauge("mtadapt_adapter_engine_info", "The engine and precision serving each adapter",
                                    ["adapter", "engine", "precision"], registry=r)
        self.placeholders = Counter("mtadapt_placeholder_problems", "Placeholders not kept exactly once, and HTML "
                                    "segments whose markup was lost, by kind", ["kind"], registry=r)

    # the worker's hooks
    def batch(self, jobs: int, sentences: int, seconds: float) -> None:
        self.batch_requests.observe(jobs)
        self.batch_sentences.observe(sentences)
        self.batch_seconds.observe(seconds)

    def batch_failed(self) -> None:
        self.batch_failures.inc()

    def queue_depth(self, sentences: int) -> None:
        self.depth.set(sentences)

    def request(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def translated(self, adapter: str | None, sentences: int, source_tokens: int, target_tokens: int) -> None:
        name = adapter or "__base__"
        self.adapter_requests.labels(name).inc()
        self.sentences.labels(name).inc(sentences)
        self.tokens.labels("source").inc(source_tokens)
        self.tokens.labels("target").inc(target_tokens)

    def placeholder_problems(self, kinds: list[str]) -> None:
        for kind in kinds:
            self.placeholders.labels(kind).inc()

    def adapters(self, loaded: int, loads: int, evictions: int) -> None:
        self.adapters_loaded.set(loaded)
        self.adapter_loads.set(loads)
        self.adapter_evictions.set(evictions)

    def engines(self, rows: list[tuple[str, str, str]]) -> None:
        """(adapter, engine, precision) of every served adapter; the labels of removed ones go."""
        self.adapter_engine.clear()
        for row in rows:
            self.adapter_engine.labels(*row).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
