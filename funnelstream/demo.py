"""The main job end to end on the embedded default.

Today it proves the smallest real path: the local stack up, one event validated by the contract,
stamped by the skew rule, produced durably to ``events.raw`` and read back from the broker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console

from funnelstream.clock import correct_event_ts
from funnelstream.contract import ImageUploaded, event_to_json, parse_event_json
from funnelstream.kafka import DeliveryReport, flush_or_raise, make_producer, produce
from funnelstream.settings import ServiceSettings
from funnelstream.topics import Topic


def run_demo(console: Console) -> None:
    from infra.stack import up

    settings = ServiceSettings()
    console.print("[bold]1.[/] starting the local stack (Kafka KRaft, SeaweedFS S3; ClickHouse is embedded chdb)")
    for name, state in up().items():
        console.print(f"   {name}: {state}")

    received_at = datetime.now(UTC)
    # A device whose clock runs 90 s fast, sending an event it queued 4 s earlier.
    device_clock = received_at + timedelta(seconds=90)
    raw = {
        "event_id": str(uuid.uuid4()),
        "event_type": "image_uploaded",
        "anonymous_id": f"demo-{uuid.uuid4().hex[:8]}",
        "input_id": str(uuid.uuid4()),
        "client_ts": (device_clock - timedelta(seconds=4)).isoformat(),
        "sent_at": device_clock.isoformat(),
        "input_url": "inputs/2026/11/26/demo.png",
        "width": 1024,
        "height": 768,
        "size_bytes": 482_113,
        "content_type": "image/png",
        "campaign": "launch",  # not in the contract: kept under properties
    }
    console.print("[bold]2.[/] validating one event with the contract")
    event = ImageUploaded.model_validate(
        {key: value for key, value in raw.items() if key != "campaign"} | {"properties": {"campaign": "launch"}}
    )
    corrected = correct_event_ts(client_ts=event.client_ts, sent_at=event.sent_at, received_at=received_at)
    event = event.model_copy(
        update={
            "received_at": received_at,
            "event_ts": corrected.event_ts,
            "timestamp_flag": corrected.flag,
            "source": "demo",
        }
    )
    console.print(
        f"   device clock skew {corrected.skew.total_seconds():+.1f}s → event_ts {corrected.event_ts.isoformat()}"
    )

    console.print(f"[bold]3.[/] producing to {Topic.EVENTS_RAW} (acks=all, idempotent)")
    producer = make_producer(settings.kafka)
    report = DeliveryReport()
    produce(producer, Topic.EVENTS_RAW, event_to_json(event), event.anonymous_id, report)
    flush_or_raise(producer, report, timeout_s=30)
    partition, offset = report.offsets[0]
    console.print(f"   acknowledged at partition {partition}, offset {offset}")

    console.print("[bold]4.[/] consuming it back from the broker")
    consumer = Consumer(
        {**settings.kafka.client_config(), "group.id": "funnelstream-demo", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(str(Topic.EVENTS_RAW), partition, offset)])
        message = None
        for _ in range(100):
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                break
        if message is None or message.error():
            raise RuntimeError("the event was acknowledged but could not be read back")
        back = parse_event_json(message.value() or b"")
    finally:
        consumer.close()
    console.print_json(back.model_dump_json(exclude_none=True))
    if back != event:
        raise RuntimeError("the event read back differs from the one produced")
    console.print("[green]round trip ok[/]: the event read back equals the one produced")
