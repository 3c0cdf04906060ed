"""A synthetic ``events.raw`` stream as the collector writes it: funnels of many devices, with
duplicates (resends) and events that arrive out of order. Used by ``make bench-stream`` and the
integration tests, which compare the processors' answer with an independent one."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
FUNNEL = (
    "image_uploaded",
    "tool_selected",
    "inference_requested",
    "inference_completed",
    "image_saved",
    "score_submitted",
)


@dataclass
class Workload:
    events: list[dict[str, Any]] = field(default_factory=list)
    """Every distinct event, with its collector stamps."""
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(key, value) in the order they are produced: shuffled, with duplicates."""

    @property
    def duplicates(self) -> int:
        return len(self.messages) - len(self.events)


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def generate(
    events: int,
    devices: int,
    *,
    duplicate_rate: float = 0.05,
    shuffle_rate: float = 0.10,
    shuffle_within_s: float = 300.0,
    session_gap_s: float = 7200.0,
    start: datetime | None = None,
    seed: int = 7,
) -> Workload:
    """``events`` distinct events over ``devices`` devices.

    Inside a visit consecutive events of a device are 5 s to 5 min apart; visits of a device are
    ``session_gap_s`` apart. The stream is in event-time order except that ``shuffle_rate`` of
    the events arrive up to ``shuffle_within_s`` late, and ``duplicate_rate`` of them are resent
    (same event id and client time) up to ``shuffle_within_s`` later.
    """
    rng = random.Random(seed)
    start = start or (datetime.now(UTC) - timedelta(hours=12)).replace(microsecond=0)
    per_device = [events // devices + (1 if i < events % devices else 0) for i in range(devices)]
    workload = Workload()
    arrivals: list[tuple[float, int, bytes, bytes]] = []
    sequence = 0
    for device_index, count in enumerate(per_device):
        anonymous_id = f"device-{device_index:07d}"
        user_agent = USER_AGENTS[device_index % len(USER_AGENTS)]
        variant = "treatment" if device_index % 2 else "control"
        ts = start + timedelta(seconds=rng.uniform(0, 1800))
        input_id = str(uuid.UUID(int=rng.getrandbits(128)))
        job_id = str(uuid.UUID(int=rng.getrandbits(128)))
        for step_index in range(count):
            step = FUNNEL[step_index % len(FUNNEL)]
            if step_index and step_index % 12 == 0:
                ts += timedelta(seconds=session_gap_s)
            elif step_index:
                ts += timedelta(seconds=rng.uniform(5, 300))
            if step == "image_uploaded":
                input_id = str(uuid.UUID(int=rng.getrandbits(128)))
                job_id = str(uuid.UUID(int=rng.getrandbits(128)))
            event = _event(rng, step, anonymous_id, input_id, job_id, ts, user_agent, variant, device_index)
            workload.events.append(event)
            value = orjson.dumps(event)
            key = anonymous_id.encode()
            arrival = ts.timestamp()
            if rng.random() < shuffle_rate:
                arrival += rng.uniform(0, shuffle_within_s)
            arrivals.append((arrival, sequence, key, value))
            sequence += 1
            if rng.random() < duplicate_rate:
                arrivals.append((arrival + rng.uniform(0, shuffle_within_s), sequence, key, value))
                sequence += 1
    arrivals.sort()
    workload.messages = [(key, value) for _, _, key, value in arrivals]
    return workload


def _event(
    rng: random.Random,
    step: str,
    anonymous_id: str,
    input_id: str,
    job_id: str,
    ts: datetime,
    user_agent: str,
    variant: str,
    device_index: int,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": step,
        "schema_version": 1,
        "anonymous_id": anonymous_id,
        "input_id": input_id,
        "client_ts": _iso(ts),
        "sent_at": _iso(ts),
        "received_at": _iso(ts),
        "event_ts": _iso(ts),
        "timestamp_flag": "ok",
        "source": "web",
        "context": {"page_url": "https://edit.example.com/", "user_agent": user_agent, "locale": "en-US"},
        "experiments": {"segmentation-tool": variant},
    }
    if device_index % 3 == 0:
        event["user_id"] = f"user-{device_index}"
    if step == "image_uploaded":
        event |= {"input_url": f"inputs/{input_id}.png", "width": 800, "height": 600, "size_bytes": 12345}
        event["content_type"] = "image/png"
    elif step == "tool_selected":
        event["tool_id"] = rng.choice((1, 2, 3, 3, 42))
    elif step == "inference_requested":
        event |= {"inference_id": rng.choice((1, 2, 3)), "job_id": job_id}
    elif step == "inference_completed":
        event |= {
            "inference_id": rng.choice((1, 2, 3)),
            "job_id": job_id,
            "status": "succeeded",
            "latency_ms": round(rng.uniform(200, 3000), 1),
            "model_name": "lama",
            "model_version": "1.0",
            "inference_url": f"results/{job_id}.png",
        }
    elif step == "image_saved":
        event["job_id"] = job_id
    elif step == "score_submitted":
        event |= {"job_id": job_id, "score": rng.randint(1, 5)}
    return event
