"""Heartbeats as the stream processors store them: the row a warehouse test loads for one heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime

from funnelstream.contract import EnrichedEvent, PipelineHeartbeat


def enriched(heartbeat: PipelineHeartbeat) -> EnrichedEvent:
    """The heartbeat as the stream processors write it to events.enriched."""
    assert heartbeat.received_at and heartbeat.event_ts
    return EnrichedEvent(
        event_id=heartbeat.event_id,
        event_type=heartbeat.event_type,
        schema_version=heartbeat.schema_version,
        anonymous_id=heartbeat.anonymous_id,
        session_id=f"{heartbeat.anonymous_id}:0",
        client_ts=heartbeat.client_ts,
        sent_at=heartbeat.sent_at,
        received_at=heartbeat.received_at,
        event_ts=heartbeat.event_ts,
        source=heartbeat.source or "",
        properties={"emitted_by": heartbeat.emitted_by},
        enriched_at=datetime.now(UTC),
    )
