"""One valid example of every event type, as a frontend would send it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from funnelstream.contract import EventType


def example(event_type: EventType | str, /, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": str(event_type),
        "schema_version": 1,
        "anonymous_id": "device-7f3a",
        "user_id": "user-42",
        "input_id": str(uuid.uuid4()),
        "client_ts": (now - timedelta(seconds=3)).isoformat(),
        "sent_at": now.isoformat(),
        "context": {"page_url": "https://edit.example.com/", "user_agent": "Mozilla/5.0", "locale": "en-US"},
        "experiments": {"segmentation-tool": "treatment"},
    }
    job_id = str(uuid.uuid4())
    extra: dict[str, dict[str, Any]] = {
        "image_uploaded": {
            "input_url": "inputs/2026/11/26/a.png",
            "width": 800,
            "height": 600,
            "size_bytes": 123_456,
            "content_type": "image/png",
        },
        "tool_selected": {"tool_id": 3},
        "segments_proposed": {"job_id": job_id, "proposal_count": 12, "latency_ms": 840.5},
        "inference_requested": {"inference_id": 1, "job_id": job_id, "mask_url": "masks/2026/11/26/m.png"},
        "inference_completed": {
            "inference_id": 1,
            "job_id": job_id,
            "status": "succeeded",
            "inference_url": "results/2026/11/26/r.png",
            "mask_url": "masks/2026/11/26/m.png",
            "latency_ms": 1200.0,
            "model_name": "opencv-telea",
            "model_version": "5.0",
        },
        "image_saved": {"job_id": job_id},
        "score_submitted": {"job_id": job_id, "score": 4},
        "experiment_exposure": {"experiment_key": "segmentation-tool", "variant": "treatment"},
        "pipeline_heartbeat": {"emitted_by": "ingest"},
    }
    return {**base, **extra[str(event_type)], **overrides}
