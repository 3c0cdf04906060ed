"""A generated clickstream with the awkward parts real traffic has: duplicates, out-of-order and
late arrival, missing steps, re-entries. Used by the tests (against an independent pandas
computation) and by the benchmark."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from funnelstream.contract import FUNNEL_STEP_OF, EnrichedEvent, EventType

TOOLS = {1: ("rectangle", "manual"), 2: ("brush", "manual"), 3: ("segmentation", "ai_assist")}
INFERENCES = {1: ("remove_object", "inpainting"), 2: ("enhance", "super_resolution"), 3: ("deblur", "deblurring")}
MODEL_VERSIONS = ("lama-1.0", "lama-1.1")
EXPERIMENT = "segmentation_tool"
START = datetime(2026, 11, 20, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class GeneratedData:
    events: list[EnrichedEvent]
    """Every distinct event once."""
    deliveries: list[EnrichedEvent]
    """What the loader receives: duplicates included, out of order."""


def _ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def generate(images: int = 300, devices: int = 80, seed: int = 7, duplicate_share: float = 0.15) -> GeneratedData:
    rng = random.Random(seed)
    device_ids = [f"device-{index:04d}" for index in range(devices)]
    variants = {device: rng.choice(("control", "treatment")) for device in device_ids}
    events: list[EnrichedEvent] = []

    def add(event_type: EventType, device: str, at: datetime, input_id: uuid.UUID | None, **fields: Any) -> None:
        at = _ms(at)
        received = at + timedelta(milliseconds=rng.randint(20, 400))
        late = rng.random() < 0.03
        events.append(
            EnrichedEvent(
                event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                event_type=event_type,
                schema_version=1,
                anonymous_id=device,
                user_id=None,
                input_id=input_id,
                session_id=f"{device}:{at:%Y%m%d}",
                client_ts=at,
                sent_at=received,
                received_at=received,
                event_ts=at,
                is_late=late,
                source=rng.choice(("web", "web", "ios")),
                funnel_step=int(FUNNEL_STEP_OF.get(event_type, 0)),
                experiments={EXPERIMENT: variants[device]},
                enriched_at=received + timedelta(milliseconds=5),
                **fields,
            )
        )

    for device in device_ids:
        add(
            EventType.EXPERIMENT_EXPOSURE,
            device,
            START + timedelta(seconds=rng.randint(0, 3600)),
            None,
            experiment_key=EXPERIMENT,
            variant=variants[device],
        )

    for _ in range(images):
        device = rng.choice(device_ids)
        input_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        at = START + timedelta(seconds=rng.randint(3600, 4 * 86400), milliseconds=rng.randint(0, 999))
        skip_upload = rng.random() < 0.05  # a missing first step: the upload event never arrived
        if not skip_upload:
            add(
                EventType.IMAGE_UPLOADED,
                device,
                at,
                input_id,
                input_url=f"s3://b/inputs/{input_id}.png",
                width=640,
                height=480,
                size_bytes=123456,
                content_type="image/png",
            )
        if rng.random() < 0.2:
            continue  # dropped off after upload
        # Re-entries: some users click tools and run inferences more than once per image.
        for _attempt in range(rng.choice((1, 1, 1, 2, 3))):
            at += timedelta(seconds=rng.expovariate(1 / 40) + 0.5, milliseconds=rng.randint(1, 999))
            tool_id = rng.choice(list(TOOLS))
            if rng.random() < 0.93:  # a few tool clicks go missing: an inference without a tool step
                add(
                    EventType.TOOL_SELECTED,
                    device,
                    at,
                    input_id,
                    tool_id=tool_id,
                    tool_name=TOOLS[tool_id][0],
                    tool_type=TOOLS[tool_id][1],
                )
            if rng.random() < 0.2:
                continue
            at += timedelta(seconds=rng.expovariate(1 / 60) + 0.5, milliseconds=rng.randint(1, 999))
            inference_id = rng.choice(list(INFERENCES))
            job_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            name, kind = INFERENCES[inference_id]
            add(
                EventType.INFERENCE_REQUESTED,
                device,
                at,
                input_id,
                inference_id=inference_id,
                inference_name=name,
                inference_type=kind,
                job_id=job_id,
                mask_url=f"s3://b/masks/{job_id}.png",
            )
            done_at = at + timedelta(milliseconds=rng.randint(300, 5000))
            add(
                EventType.INFERENCE_COMPLETED,
                device,
                done_at,
                input_id,
                inference_id=inference_id,
                inference_name=name,
                inference_type=kind,
                job_id=job_id,
                status="succeeded",
                inference_url=f"s3://b/results/{job_id}.png",
                mask_url=f"s3://b/masks/{job_id}.png",
                latency_ms=float(rng.randint(300, 5000)),
                model_name="lama",
                model_version=rng.choice(MODEL_VERSIONS),
            )
            at = done_at
            if rng.random() < 0.3:
                continue
            # Some saves come hours later: outside a one-hour funnel window.
            gap = rng.expovariate(1 / 30) + 0.5 if rng.random() < 0.9 else rng.uniform(3700, 9000)
            at += timedelta(seconds=gap, milliseconds=rng.randint(1, 999))
            add(EventType.IMAGE_SAVED, device, at, input_id, job_id=job_id)
            if rng.random() < 0.5:
                at += timedelta(seconds=rng.uniform(1, 20), milliseconds=rng.randint(1, 999))
                add(EventType.SCORE_SUBMITTED, device, at, input_id, job_id=job_id, score=rng.randint(1, 5))

    deliveries = list(events)
    deliveries += [event for event in events if rng.random() < duplicate_share]
    rng.shuffle(deliveries)
    return GeneratedData(events=events, deliveries=deliveries)
