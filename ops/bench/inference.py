"""``make bench-inference``: service overhead, classical throughput and a SAM embedding time.

Needs the local stack; the last line is one JSON object: ``overhead_p50_ms`` (per job, pickup to
acknowledged result minus model time, through the real worker; 256 px, and 1024 px), ``jobs_per_s``
(each classical default on 1024 px images, and the model alone), ``sam_vit_b_cpu_s`` (one vit_b
embedding at 1024 px on the CPU, random weights, with the thread count).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from funnelstream import objectstore
from funnelstream.contract import InferenceJob, JobKind
from funnelstream.kafka import make_admin
from funnelstream.objectstore import MinioStore
from inference_service.images import encode_png
from inference_service.models.registry import ModelRegistry
from inference_service.pipeline import JobProcessor, Timings
from inference_service.settings import InferenceSettings
from inference_service.worker import InferenceWorker, JobRecord


def _photo_like(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.normal(0, 1, (size // 16, size // 16, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, (size, size, 3))
    return np.clip(128 + 50 * base + noise, 0, 255).astype(np.uint8)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _upload(store: MinioStore, image: np.ndarray, at: datetime) -> tuple[uuid.UUID, str]:
    input_id = uuid.uuid4()
    key = f"bench/{objectstore.input_key(input_id, at, 'png')}"
    store.put(key, encode_png(image), "image/png")
    return input_id, key


def bench_overhead(settings: InferenceSettings, size: int, jobs: int) -> dict[str, float]:
    admin = make_admin(settings.kafka)
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"bench.inference.{role}.{suffix}" for role in ("jobs", "results", "events", "dlq")}
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1) for name in names.values()])
    for future in futures.values():
        future.result()
    config = settings.inference.model_copy(
        update={
            "jobs_topic": names["jobs"],
            "results_topic": names["results"],
            "events_topic": names["events"],
            "dlq_topic": names["dlq"],
            "consumer_group": f"bench-inference-{suffix}",
            "max_in_flight": 1,
            "warmup": True,
        }
    )
    run_settings = settings.model_copy(update={"inference": config})
    store = MinioStore.of(settings.s3)
    registry = ModelRegistry.load(config)
    records: list[JobRecord] = []
    done = threading.Event()

    def on_done(record: JobRecord) -> None:
        records.append(record)
        if len(records) >= jobs:
            done.set()

    worker = InferenceWorker(run_settings, JobProcessor(registry, store, config), on_job_done=on_done)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        at = datetime.now(UTC)
        input_id, key = _upload(store, _photo_like(size, 1), at)
        producer = Producer(settings.kafka.client_config())
        started = time.perf_counter()
        for _ in range(jobs):
            job = InferenceJob(
                job_id=uuid.uuid4(),
                kind=JobKind.RESTORE,
                input_id=input_id,
                input_key=key,
                anonymous_id="bench-device",
                inference_id=3,
                inference_name="deblur",
                submitted_at=at,
            )
            producer.produce(names["jobs"], key=str(input_id), value=job.model_dump_json().encode())
        producer.flush(30)
        if not done.wait(600):
            raise RuntimeError(f"only {len(records)} of {jobs} jobs finished")
        elapsed = time.perf_counter() - started
    finally:
        worker.stop()
        thread.join(120)
        for future in admin.delete_topics(list(names.values())).values():
            future.result()
    overhead_ms = [r.timings.overhead_s * 1000 for r in records if r.status == "succeeded"]
    succeeded = [r.timings for r in records if r.status == "succeeded"]
    model_ms = [t.model_s * 1000 for t in succeeded]
    return {
        "overhead_p50_ms": round(_percentile(overhead_ms, 50), 2),
        "overhead_p90_ms": round(_percentile(overhead_ms, 90), 2),
        "model_p50_ms": round(_percentile(model_ms, 50), 2),
        "fetch_decode_p50_ms": round(_percentile([t.fetch_s * 1000 for t in succeeded], 50), 2),
        "encode_upload_p50_ms": round(_percentile([t.upload_s * 1000 for t in succeeded], 50), 2),
        "produce_p50_ms": round(_percentile([t.publish_s * 1000 for t in succeeded], 50), 2),
        "end_to_end_jobs_per_s": round(jobs / elapsed, 2),
    }


def bench_classical(settings: InferenceSettings, repeats: int) -> dict[str, dict[str, float]]:
    config = settings.inference.model_copy(update={"warmup": False})
    registry = ModelRegistry.load(config)
    store = MinioStore.of(settings.s3)
    processor = JobProcessor(registry, store, config)
    at = datetime.now(UTC)
    image = _photo_like(1024, 2)
    mask = np.zeros((1024, 1024), bool)
    mask[384:640, 384:640] = True  # a 256 px object, 6% of the image
    input_id, input_key = _upload(store, image, at)
    mask_key = f"bench/masks/{uuid.uuid4()}.png"
    store.put(mask_key, encode_png(mask), "image/png")
    cases: dict[str, tuple[int, dict[str, Any]]] = {
        "remove_object": (1, {}),
        "enhance_x2": (2, {"scale": 2}),
        "enhance_x4": (2, {"scale": 4}),
        "deblur": (3, {}),
    }
    results: dict[str, dict[str, float]] = {}
    for case, (inference_id, params) in cases.items():
        model = registry.restoration_for(inference_id, None)
        started = time.perf_counter()
        for _ in range(repeats):
            model.run(image, mask if model.needs_mask else None, params)
        model_only = repeats / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(repeats):
            job = InferenceJob(
                job_id=uuid.uuid4(),
                kind=JobKind.RESTORE,
                input_id=input_id,
                input_key=input_key,
                anonymous_id="bench-device",
                inference_id=inference_id,
                mask_key=mask_key if model.needs_mask else None,
                params=params,
                submitted_at=at,
            )
            processor.run(job, Timings())
        pipeline = repeats / (time.perf_counter() - started)
        results[case] = {
            "model": model.name,  # type: ignore[dict-item]
            "model_only": round(model_only, 2),
            "with_object_store": round(pipeline, 2),
        }
    return results


def bench_sam_vit_b(threads: int) -> float:
    # The SAM engine is optional and heavy: loaded only for this figure.
    import torch  # noqa: PLC0415
    from segment_anything import SamPredictor  # noqa: PLC0415

    from inference_service.models.sam import build_sam  # noqa: PLC0415

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    predictor = SamPredictor(build_sam("vit_b"))
    image = _photo_like(1024, 3)
    with torch.inference_mode():
        started = time.perf_counter()
        predictor.set_image(image)
        return time.perf_counter() - started


def main() -> int:
    settings = InferenceSettings()
    settings = settings.model_copy(update={"inference": settings.inference.model_copy(update={"device": "cpu"})})
    threads = 2
    small = bench_overhead(settings, 256, 200)
    print(f"overhead 256 px: {small}", file=sys.stderr)
    large = bench_overhead(settings, 1024, 30)
    print(f"overhead 1024 px: {large}", file=sys.stderr)
    classical = bench_classical(settings, 5)
    print(f"classical 1024 px: {classical}", file=sys.stderr)
    sam_s = bench_sam_vit_b(threads)
    print(f"sam vit_b embedding 1024 px, {threads} threads: {sam_s:.2f}s", file=sys.stderr)
    summary = {
        "overhead_p50_ms": small["overhead_p50_ms"],
        "overhead_p90_ms": small["overhead_p90_ms"],
        "overhead_image_px": 256,
        "overhead_p50_ms_1024px": large["overhead_p50_ms"],
        "end_to_end_jobs_per_s_256px": small["end_to_end_jobs_per_s"],
        "jobs_per_s": {case: values["with_object_store"] for case, values in classical.items()},
        "model_only_per_s": {case: values["model_only"] for case, values in classical.items()},
        "image_px": 1024,
        "sam_vit_b_cpu_s": round(sam_s, 2),
        "sam_torch_threads": threads,
        "device": "cpu",
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
