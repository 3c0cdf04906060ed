"""Realistic editing journeys with planted effects, for the demo, load tests and A/B checks.

A journey is one device's visit: exposure to the experiment, then per image an upload, tool
clicks, inferences, a save and a rating, each step reached with a probability that depends on the
arm. The treatment arm (the Segmentation Tool) has a shorter task time (first tool click → save)
and a higher save rate, by amounts set in :class:`SimulationConfig`; the analysis must find them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

EXPERIMENT_KEY = "segmentation_tool"
TOOL_IDS = {"rectangle": 1, "brush": 2, "segmentation": 3}
INFERENCE_IDS = {"remove_object": 1, "enhance": 2, "deblur": 3}
NAMESPACE = uuid.UUID("6f1c2f0e-5d7a-4b8e-9a51-3c2d1e0f4a7b")


@dataclass(frozen=True)
class SimulationConfig:
    users: int = 2000
    seed: int = 7
    window: timedelta = timedelta(hours=6)
    """Journeys start uniformly over this window before ``now``."""
    p_tool: float = 0.85
    p_inference: float = 0.75
    p_save_control: float = 0.50
    save_lift: float = 0.05
    """Absolute lift of the save rate (given an inference) in the treatment arm."""
    p_score: float = 0.6
    task_time_median_s: float = 120.0
    task_time_factor: float = 0.70
    """Treatment task time = control task time x this factor (0.70 is a 30% cut)."""
    task_time_sigma: float = 0.6
    images_per_user_mean: float = 1.4
    login_rate: float = 0.3
    second_device_rate: float = 0.1
    """Share of logged-in users who come back on a second device."""
    inference_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)


@dataclass
class Journey:
    anonymous_id: str
    user_id: str | None
    variant: str
    events: list[dict[str, Any]] = field(default_factory=list)


Assign = Callable[[str, str | None], str]


def _event_id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def _ts(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


def simulate(config: SimulationConfig, assign: Assign, now: datetime | None = None) -> Iterator[Journey]:
    """Yield journeys; ``assign(anonymous_id, user_id)`` returns the arm, as the collector would.

    Event ids are derived from the seed, so the same configuration yields the same events: a
    resend of a simulated batch is a resend, not new data.
    """
    now = now or datetime.now(UTC)
    start_of_window = now - config.window
    for user in range(config.users):
        # One generator per user and per journey: who exists does not depend on what each arm did.
        people = np.random.default_rng([config.seed, user])
        user_id = f"user-{config.seed}-{user}" if people.random() < config.login_rate else None
        devices = [f"anon-{config.seed}-{user}-0"]
        if user_id and people.random() < config.second_device_rate:
            devices.append(f"anon-{config.seed}-{user}-1")
        for device_index, anonymous_id in enumerate(devices):
            variant = assign(anonymous_id, user_id if device_index > 0 else None)
            if device_index == 0 and user_id:
                # The login happens during the first visit; the assignment must not move.
                variant = assign(anonymous_id, user_id)
            rng = np.random.default_rng([config.seed, user, device_index])
            begin = start_of_window + timedelta(seconds=float(rng.uniform(0, config.window.total_seconds() - 3600)))
            yield _journey(config, rng, anonymous_id, user_id, variant, begin, f"{user}/{device_index}")


def _journey(
    config: SimulationConfig,
    rng: np.random.Generator,
    anonymous_id: str,
    user_id: str | None,
    variant: str,
    begin: datetime,
    tag: str,
) -> Journey:
    journey = Journey(anonymous_id, user_id, variant)
    treatment = variant == "treatment"
    clock = begin

    def emit(event_type: str, at: datetime, **fields: Any) -> None:
        event: dict[str, Any] = {
            "event_id": _event_id(config.seed, tag, len(journey.events), event_type),
            "event_type": event_type,
            "anonymous_id": anonymous_id,
            "client_ts": _ts(at),
            "experiments": {EXPERIMENT_KEY: variant},
            "context": {"library_name": "funnelstream-simulator", "library_version": "1"},
            **fields,
        }
        if user_id:
            event["user_id"] = user_id
        journey.events.append(event)

    emit("experiment_exposure", clock, experiment_key=EXPERIMENT_KEY, variant=variant)
    images = 1 + int(rng.poisson(max(config.images_per_user_mean - 1, 0)))
    for image in range(images):
        input_id = str(uuid.UUID(_event_id(config.seed, tag, "input", image)))
        clock += timedelta(seconds=float(rng.uniform(3, 30)))
        width, height = int(rng.choice([640, 1024, 2048])), int(rng.choice([480, 768, 1536]))
        emit(
            "image_uploaded",
            clock,
            input_id=input_id,
            input_url=f"inputs/{clock:%Y/%m/%d}/{input_id}.png",
            width=width,
            height=height,
            size_bytes=int(width * height * rng.uniform(0.5, 1.5)),
            content_type="image/png",
        )
        if rng.random() >= config.p_tool:
            continue
        clock += timedelta(seconds=float(rng.uniform(2, 20)))
        first_tool_click = clock
        tool = "segmentation" if treatment else str(rng.choice(["rectangle", "brush"]))
        emit("tool_selected", clock, input_id=input_id, tool_id=TOOL_IDS[tool])
        median = config.task_time_median_s * (config.task_time_factor if treatment else 1.0)
        task_time = float(rng.lognormal(np.log(median), config.task_time_sigma))
        job_id = _event_id(config.seed, tag, "job", image)
        if treatment:
            emit(
                "segments_proposed",
                clock + timedelta(seconds=1.5),
                input_id=input_id,
                job_id=_event_id(config.seed, tag, "segment-job", image),
                proposal_count=int(rng.integers(3, 40)),
                latency_ms=float(rng.uniform(400, 2500)),
            )
        if rng.random() >= config.p_inference:
            continue
        inference = str(rng.choice(list(INFERENCE_IDS), p=list(config.inference_weights)))
        requested = first_tool_click + timedelta(seconds=task_time * float(rng.uniform(0.5, 0.8)))
        emit("inference_requested", requested, input_id=input_id, inference_id=INFERENCE_IDS[inference], job_id=job_id)
        latency = float(rng.uniform(800, 4000))
        emit(
            "inference_completed",
            requested + timedelta(milliseconds=latency),
            input_id=input_id,
            inference_id=INFERENCE_IDS[inference],
            job_id=job_id,
            status="succeeded",
            inference_url=f"results/{requested:%Y/%m/%d}/{job_id}.png",
            mask_url=f"masks/{requested:%Y/%m/%d}/{job_id}.png",
            latency_ms=latency,
            model_name=f"default-{inference}",
            model_version="1",
        )
        p_save = config.p_save_control + (config.save_lift if treatment else 0.0)
        if rng.random() >= p_save:
            clock = requested + timedelta(seconds=10)
            continue
        saved = first_tool_click + timedelta(seconds=task_time)
        saved = max(saved, requested + timedelta(milliseconds=latency + 500))
        emit("image_saved", saved, input_id=input_id, job_id=job_id)
        clock = saved
        if rng.random() < config.p_score:
            clock += timedelta(seconds=float(rng.uniform(2, 15)))
            score = int(np.clip(rng.normal(4.2 if treatment else 3.9, 0.8), 1, 5))
            emit("score_submitted", clock, input_id=input_id, job_id=job_id, score=score)
    return journey
