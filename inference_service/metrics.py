"""Prometheus metrics of the inference service, served on ``/metrics`` next to ``/readyz``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter("inference_jobs_total", "Jobs finished, by kind, model and status", ["kind", "model", "status"])
JOB_SECONDS = Histogram(
    "inference_job_seconds",
    "Pickup to published result",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
MODEL_SECONDS = Histogram(
    "inference_model_seconds",
    "Time inside the model",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
OVERHEAD_SECONDS = Histogram(
    "inference_overhead_seconds",
    "Pickup to published result minus model time: object store, encoding, produce",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
IN_FLIGHT = Gauge("inference_jobs_in_flight", "Jobs picked up and not yet finished")
DEAD_LETTERS = Counter("inference_dead_letters_total", "Jobs sent to the dead-letter topic", ["field"])
