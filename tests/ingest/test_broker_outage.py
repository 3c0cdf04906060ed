"""Acceptance: the broker stops in the middle of a load and comes back.

Clients get 503, never 202, for what was not stored; after the restart every event that got a 202
is in events.raw exactly once. Runs on a private broker with its own ports and data folder, never
on the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from funnelstream.contract import parse_event_json
from funnelstream.topics import Topic
from infra.stack import InfraSettings, down, up
from ingest.app import create_app
from ingest.settings import IngestSettings, hash_write_key
from tests.helpers.examples import example
from tests.helpers.kafka_topics import read_events

KEY = "outage-key"
SENDERS = 4
EVENTS_PER_REQUEST = 10
RECOVERED_AFTER = 20


@pytest.fixture
def private_kafka(tmp_path: Path, infra_settings: InfraSettings) -> Iterator[InfraSettings]:
    settings = InfraSettings(
        kafka={"bootstrap_servers": "127.0.0.1:29192", "partitions": 2},
        stack={"dir": tmp_path / "stack", "cache_dir": infra_settings.stack.cache_dir, "kafka_controller_port": 29193},
    )
    up(["kafka"], settings)
    yield settings
    down(["kafka"], settings)


@dataclass
class Outcomes:
    accepted: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    other: list[int] = field(default_factory=list)
    accepted_after_restart: int = 0
    missing_retry_after: int = 0


async def send_until(
    client: httpx.AsyncClient,
    stop: asyncio.Event,
    restarted: threading.Event,
    recovered: asyncio.Event,
    out: Outcomes,
) -> None:
    while not stop.is_set():
        events = [example("image_saved", anonymous_id=f"device-{i}") for i in range(EVENTS_PER_REQUEST)]
        ids = [e["event_id"] for e in events]
        response = await client.post("/v1/batch", content=orjson.dumps({"batch": events}), headers={"X-Write-Key": KEY})
        if response.status_code == 202:
            assert response.json()["accepted"] == EVENTS_PER_REQUEST
            out.accepted.extend(ids)
            out.accepted_after_restart += restarted.is_set()
            if out.accepted_after_restart >= RECOVERED_AFTER:
                recovered.set()
        elif response.status_code == 503:
            out.unavailable.extend(ids)
            out.missing_retry_after += "retry-after" not in response.headers
        else:
            out.other.append(response.status_code)
        await asyncio.sleep(0.02)


@pytest.mark.integration
@pytest.mark.slow
def test_broker_outage_gives_503_and_every_202_is_stored_once(private_kafka: InfraSettings) -> None:
    settings = IngestSettings(  # type: ignore[call-arg]
        _env_file=None,
        kafka=private_kafka.kafka,
        ingest={
            "sources": {"load": {"write_key_sha256": [hash_write_key(KEY)], "rate_per_s": 1e6, "burst": 1e6}},
            "delivery_timeout_s": 3.0,
            "results_consumer": False,
        },
    )
    app = create_app(settings)
    out = Outcomes()
    restarted = threading.Event()

    async def scenario() -> None:
        stop = asyncio.Event()
        recovered = asyncio.Event()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://collector", timeout=30) as client:
                senders = [
                    asyncio.create_task(send_until(client, stop, restarted, recovered, out)) for _ in range(SENDERS)
                ]
                await asyncio.sleep(2)
                assert out.accepted, f"no 202 before the outage: {out.other} {len(out.unavailable)}"
                await asyncio.to_thread(down, ["kafka"], private_kafka)
                await asyncio.sleep(settings.ingest.delivery_timeout_s + 3)
                await asyncio.to_thread(up, ["kafka"], private_kafka)
                restarted.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(recovered.wait(), 30)
                stop.set()
                await asyncio.gather(*senders)

    asyncio.run(scenario())

    summary = (
        f"202: {len(out.accepted)} events, 503: {len(out.unavailable)} events, "
        f"202 after restart: {out.accepted_after_restart} requests, other statuses: {out.other}"
    )
    print(summary)
    assert out.other == [], summary
    assert out.unavailable, f"the outage produced no 503; {summary}"
    assert out.missing_retry_after == 0, summary
    assert out.accepted_after_restart >= RECOVERED_AFTER, f"the collector did not recover after the restart; {summary}"
    stored = Counter(
        str(parse_event_json(value).event_id)
        for _, value in read_events(private_kafka.kafka, str(Topic.EVENTS_RAW), timeout_s=60)
    )
    missing = [event_id for event_id in out.accepted if event_id not in stored]
    duplicated = [event_id for event_id in out.accepted if stored[event_id] > 1]
    assert missing == [], f"{len(missing)} events answered 202 are not in events.raw"
    assert duplicated == [], f"{len(duplicated)} events answered 202 are stored more than once"
