"""Prometheus metrics of one collector app; a registry per app keeps test apps apart."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "ingest_events_accepted",
            "Events confirmed by the broker and answered 202",
            ["source"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "ingest_events_rejected",
            "Refusals by reason: events for invalid_event (each also in events.dlq), requests otherwise",
            ["reason"],
            registry=self.registry,
        )
        self.requests = Counter(
            "ingest_requests", "Requests answered, by route and status", ["route", "status"], registry=self.registry
        )
        self.produce_latency = Histogram(
            "ingest_produce_latency_seconds",
            "From the first produce of a request to the broker's confirmation of its last message",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ingest_producer_queue_depth", "Messages waiting in the producer for the broker", registry=self.registry
        )
        self.results_cached = Gauge(
            "ingest_job_results_cached", "Inference results held for GET /v1/jobs", registry=self.registry
        )
        self.results_undecodable = Counter(
            "ingest_job_results_undecodable",
            "Messages on inference.results that are not a result",
            registry=self.registry,
        )

    def watch(self, queue_depth: Callable[[], int], results_cached: Callable[[], int]) -> None:
        self.queue_depth.set_function(queue_depth)
        self.results_cached.set_function(results_cached)


class HotPathMetrics:
    """Label children resolved once: ``labels()`` per request costs more than the counter itself."""

    def __init__(self, metrics: IngestMetrics) -> None:
        self.produce_latency = metrics.produce_latency
        self.batch_accepted = metrics.requests.labels("batch", "202")
        self.event_accepted = metrics.requests.labels("event", "202")
        self.invalid_events = metrics.rejected.labels("invalid_event")
        self._accepted = metrics.accepted
        self._accepted_by_source: dict[str, Counter] = {}

    def accepted(self, source: str) -> Counter:
        counter = self._accepted_by_source.get(source)
        if counter is None:
            counter = self._accepted_by_source[source] = self._accepted.labels(source)
        return counter
