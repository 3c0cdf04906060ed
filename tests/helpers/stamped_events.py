"""Raw events as the collector hands them to the stream processors: stamped at one instant, from Chrome on the web."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.helpers.examples import example

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def stamped(event_type: str, at: datetime, anonymous_id: str = "device-1", **fields: Any) -> dict[str, Any]:
    """An example event with every timestamp at ``at`` and a web context, as it leaves the collector."""
    event = example(event_type, anonymous_id=anonymous_id, **fields)
    event |= {
        "client_ts": at.isoformat(),
        "sent_at": at.isoformat(),
        "received_at": at.isoformat(),
        "event_ts": at.isoformat(),
        "timestamp_flag": "ok",
        "source": "web",
    }
    event["context"] = {"user_agent": CHROME, "page_url": "https://edit.example.com/"}
    return event
