"""One job through decode → fetch → infer → upload → messages, with the object store in memory."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from funnelstream.contract import (
    DeadLetter,
    InferenceCompleted,
    InferenceResult,
    JobKind,
    JobStatus,
    SegmentsProposed,
    parse_event_json,
)
from inference_service.errors import (
    CorruptImage,
    InputMissing,
    InputTooLarge,
    JobAbandoned,
    JobFailed,
    MaskMismatch,
    OutputTooLarge,
    UndecodableJob,
)
from inference_service.models.registry import ModelRegistry
from inference_service.pipeline import JobProcessor, Source, Timings, decode_job, event_id_for
from inference_service.settings import InferenceConfig
from tests.helpers.images import png, read_png, scene
from tests.helpers.inference import MemoryStore, make_job, sam_config

SUBMITTED = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.load(InferenceConfig(device="cpu", warmup=False))


def processor_for(registry: ModelRegistry, store: MemoryStore) -> JobProcessor:
    config = InferenceConfig(results_topic="results", events_topic="raw", dlq_topic="dlq")
    return JobProcessor(registry, store, config, now=lambda: datetime(2026, 1, 2, 10, 0, 5, tzinfo=UTC))


def source_of(payload: bytes, key: bytes | None = b"input-1") -> Source:
    return Source("jobs", 0, 42, key, payload)


def test_enhance_writes_the_result_where_job_id_and_day_say(registry: ModelRegistry) -> None:
    store = MemoryStore()
    image = scene()
    store.objects["inputs/2026/01/02/in.png"] = png(image)
    job = make_job(inference_id=2, params={"scale": 2})
    processor = processor_for(registry, store)

    done = processor.run(job, timings := Timings())
    messages = processor.success_messages(job, done, timings)

    key = f"results/2026/01/02/{job.job_id}.png"
    assert done.result_url == f"s3://test-bucket/{key}" and done.mask_url is None
    assert read_png(store.objects[key]).shape == (192, 256, 3)
    assert [m.topic for m in messages] == ["results", "raw"]
    result = InferenceResult.model_validate_json(messages[0].value)
    assert messages[0].key == str(job.job_id)
    assert result.status is JobStatus.SUCCEEDED and result.model_name == "lanczos-unsharp"
    event = parse_event_json(messages[1].value)
    assert isinstance(event, InferenceCompleted)
    assert messages[1].key == job.anonymous_id
    assert event.event_id == event_id_for(job.job_id, event.event_type)
    assert event.inference_url == done.result_url and event.status == "succeeded"
    assert event.source == "inference_service"
    assert event.event_ts == event.received_at == datetime(2026, 1, 2, 10, 0, 5, tzinfo=UTC)
    assert event.client_ts == job.submitted_at
    assert timings.model_s > 0 and timings.overhead_s >= 0


def test_remove_object_stores_mask_and_result_and_fills_the_object(registry: ModelRegistry) -> None:
    store = MemoryStore()
    image = np.zeros((64, 80, 3), np.uint8)
    image[:] = (30, 160, 90)
    mask = np.zeros((64, 80), np.uint8)
    mask[20:40, 30:50] = 255
    image[mask > 0] = (255, 255, 255)
    store.objects["inputs/2026/01/02/in.png"] = png(image)
    store.objects["uploads/mask.png"] = png(mask)
    job = make_job(inference_id=1, mask_key="uploads/mask.png")
    processor = processor_for(registry, store)

    done = processor.run(job, Timings())

    result = read_png(store.objects[f"results/2026/01/02/{job.job_id}.png"])
    stored_mask = read_png(store.objects[f"masks/2026/01/02/{job.job_id}.png"])
    assert np.array_equal(stored_mask > 0, mask > 0)
    assert np.abs(result[mask > 0].astype(int) - (30, 160, 90)).max() <= 8
    assert done.mask_url == f"s3://test-bucket/masks/2026/01/02/{job.job_id}.png"


def test_a_redelivered_job_writes_the_same_keys_and_event_id(registry: ModelRegistry) -> None:
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = png(scene())
    job = make_job(inference_id=3)
    processor = processor_for(registry, store)

    first = processor.success_messages(job, processor.run(job, Timings()), Timings())
    keys_after_first = set(store.objects)
    again = decode_job(job.model_dump_json().encode())
    second = processor.success_messages(again, processor.run(again, Timings()), Timings())

    assert set(store.objects) == keys_after_first
    first_event, second_event = (parse_event_json(m[1].value) for m in (first, second))
    assert first_event.event_id == second_event.event_id
    assert first_event.client_ts == second_event.client_ts, "the dedup key (event_id, client_ts) repeats"


def test_segment_job_stores_png_masks_and_a_json_index(tiny_sam_checkpoint: Path) -> None:
    registry = ModelRegistry.load(sam_config(tiny_sam_checkpoint, warmup=False))
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = png(scene())
    job = make_job(kind=JobKind.SEGMENT)
    processor = processor_for(registry, store)

    done = processor.run(job, timings := Timings())
    messages = processor.success_messages(job, done, timings)

    index = orjson.loads(store.objects[f"proposals/{job.job_id}/proposals.json"])
    assert done.proposal_count == len(index["proposals"]) > 0
    assert (index["width"], index["height"]) == (128, 96)
    for proposal in index["proposals"]:
        key = proposal["mask_url"].removeprefix("s3://test-bucket/")
        mask = read_png(store.objects[key])
        assert mask.shape == (96, 128)
        assert int((mask > 0).sum()) == proposal["area"]
        assert len(proposal["box"]) == 4 and isinstance(proposal["predicted_iou"], float)
    event = parse_event_json(messages[1].value)
    assert isinstance(event, SegmentsProposed) and event.proposal_count == done.proposal_count
    assert InferenceResult.model_validate_json(messages[0].value).proposals_url == done.proposals_url


def test_without_sam_the_classical_proposer_finds_the_object(registry: ModelRegistry) -> None:
    store = MemoryStore()
    image = np.full((96, 128, 3), (40, 120, 200), np.uint8)
    image[30:70, 50:100] = (220, 60, 40)  # one red object on a blue background
    store.objects["inputs/2026/01/02/in.png"] = png(image)
    done = processor_for(registry, store).run(make_job(kind=JobKind.SEGMENT), Timings())
    assert done.model_name == "opencv-regions" and done.proposal_count >= 1
    manifest = orjson.loads(store.objects[next(k for k in store.objects if k.endswith("proposals.json"))])
    boxes = [tuple(p["box"]) for p in manifest["proposals"]]
    assert (50.0, 30.0, 50.0, 40.0) in boxes  # x, y, width, height of the object


def test_a_missing_input_names_the_key(registry: ModelRegistry) -> None:
    with pytest.raises(InputMissing) as caught:
        processor_for(registry, MemoryStore()).run(make_job(input_key="inputs/nope.png"), Timings())
    assert caught.value.field == "input_key" and "inputs/nope.png" in caught.value.reason


def test_a_corrupt_image_is_refused_with_the_decoder_reason(registry: ModelRegistry) -> None:
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = png(scene())[:200]  # truncated upload
    with pytest.raises(CorruptImage) as caught:
        processor_for(registry, store).run(make_job(), Timings())
    assert caught.value.field == "input_key"


def test_an_image_over_the_pixel_limit_is_refused(registry: ModelRegistry) -> None:
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = png(scene(200, 200))
    config = InferenceConfig(max_image_pixels=10_000)
    processor = JobProcessor(registry, store, config)
    with pytest.raises(CorruptImage, match="exceeds the limit"):
        processor.run(make_job(), Timings())


def test_an_output_over_the_pixel_limit_fails_before_the_input_is_decoded(registry: ModelRegistry) -> None:
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = png(scene(100, 100))
    processor = JobProcessor(registry, store, InferenceConfig(max_output_pixels=100_000))
    with pytest.raises(OutputTooLarge, match="100x100 image ×4 would be 400x400 pixels") as caught:
        processor.run(make_job(inference_id=2, params={"scale": 4}), Timings())
    assert caught.value.field == "params.scale"
    processor.run(make_job(inference_id=2, params={"scale": 2}), Timings())  # 200x200 fits


@pytest.mark.parametrize(
    ("content_type", "data", "error", "reason"),
    [
        ("text/html", b"<html></html>", CorruptImage, "stored as 'text/html', not as an image type"),
        ("image/jpeg", png(scene(8, 8)), CorruptImage, "a PNG image stored as 'image/jpeg'"),
        ("image/png", b"GIF89a" + bytes(64), CorruptImage, "not a readable image"),
        ("image/png", png(scene(8, 8)) + bytes(2_000), InputTooLarge, "over the limit of 1000 bytes"),
    ],
)
def test_a_stored_object_is_checked_before_it_is_decoded(
    registry: ModelRegistry, content_type: str, data: bytes, error: type[Exception], reason: str
) -> None:
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = data
    store.content_types["inputs/2026/01/02/in.png"] = content_type
    processor = JobProcessor(registry, store, InferenceConfig(max_input_bytes=1_000))
    with pytest.raises(error, match=reason) as caught:
        processor.run(make_job(), Timings())
    assert caught.value.field == "input_key"  # type: ignore[attr-defined]


def test_an_input_replaced_after_the_job_was_accepted_is_not_used(registry: ModelRegistry) -> None:
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = png(scene())
    accepted = store.read("inputs/2026/01/02/in.png", 10**6).etag
    store.objects["inputs/2026/01/02/in.png"] = png(scene(96, 100))  # posted again under the same policy
    with pytest.raises(JobFailed, match="replaced after the job was accepted") as caught:
        processor_for(registry, store).run(make_job(input_etag=accepted), Timings())
    assert caught.value.field == "input_key"
    current = store.read("inputs/2026/01/02/in.png", 10**6).etag
    processor_for(registry, store).run(make_job(input_etag=current), Timings())


def test_a_mask_of_the_wrong_size_is_refused(registry: ModelRegistry) -> None:
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = png(scene(96, 128))
    store.objects["m.png"] = png(np.zeros((50, 50), np.uint8))
    with pytest.raises(MaskMismatch, match="mask is 50x50 but the image is 128x96"):
        processor_for(registry, store).run(make_job(inference_id=1, mask_key="m.png"), Timings())
    assert not any(key.startswith(("results/", "masks/")) for key in store.objects), "nothing half-written"


def test_failure_messages_report_a_failed_result_event_and_dead_letter(registry: ModelRegistry) -> None:
    job = make_job(inference_id=1, mask_key="m.png")
    payload = job.model_dump_json().encode()
    processor = processor_for(registry, MemoryStore())
    error = MaskMismatch((128, 96), (50, 50))

    messages = processor.failure_messages(job, error, source_of(payload), Timings(), processor.model_of(job))

    assert [m.topic for m in messages] == ["results", "raw", "dlq"]
    result = InferenceResult.model_validate_json(messages[0].value)
    assert result.status is JobStatus.FAILED and "mask is 50x50" in (result.error or "")
    event = parse_event_json(messages[1].value)
    assert isinstance(event, InferenceCompleted) and event.status == "failed" and event.model_name == "opencv-telea"
    letter = DeadLetter.model_validate_json(messages[2].value)
    assert letter.stage == "inference" and (letter.partition, letter.offset) == (0, 42)
    assert letter.errors[0].field == "mask_key"
    assert letter.payload.encode() == payload, "the original bytes can be replayed"


def test_an_undecodable_job_names_the_field_and_still_reports_its_job_id() -> None:
    job_id, input_id = uuid.uuid4(), uuid.uuid4()
    payload = orjson.dumps({"job_id": str(job_id), "kind": "restore", "input_id": str(input_id)})
    with pytest.raises(UndecodableJob) as caught:
        decode_job(payload)
    assert "input_key" in caught.value.reason and "inference_id" not in caught.value.field

    processor = processor_for(ModelRegistry.load(InferenceConfig(device="cpu", warmup=False)), MemoryStore())
    messages = processor.failure_messages(None, caught.value, source_of(payload))
    assert [m.topic for m in messages] == ["results", "dlq"]
    assert InferenceResult.model_validate_json(messages[0].value).job_id == job_id

    garbage = processor.failure_messages(None, UndecodableJob("job", "not JSON"), source_of(b"\xff\x00"))
    assert [m.topic for m in garbage] == ["dlq"]
    assert DeadLetter.model_validate_json(garbage[0].value).payload_encoding == "base64"


def test_an_abandoned_job_writes_nothing(registry: ModelRegistry) -> None:
    store = MemoryStore()
    store.objects["inputs/2026/01/02/in.png"] = png(scene())
    with pytest.raises(JobAbandoned):
        processor_for(registry, store).run(make_job(inference_id=3), Timings(), abandoned=lambda: True)
    assert list(store.objects) == ["inputs/2026/01/02/in.png"]
