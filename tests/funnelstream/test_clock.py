from __future__ import annotations

from datetime import UTC, datetime, timedelta

from funnelstream.clock import correct_event_ts
from funnelstream.contract import TimestampFlag

RECEIVED = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def test_a_fast_device_clock_is_corrected_by_the_send_delay() -> None:
    # Device clock is 2 h ahead; the event was queued 30 s before the batch was sent.
    sent_at = RECEIVED + timedelta(hours=2)
    result = correct_event_ts(client_ts=sent_at - timedelta(seconds=30), sent_at=sent_at, received_at=RECEIVED)
    assert result.event_ts == RECEIVED - timedelta(seconds=30)
    assert result.flag is TimestampFlag.OK
    assert result.skew == timedelta(hours=2)


def test_a_slow_device_clock_is_corrected_too() -> None:
    sent_at = RECEIVED - timedelta(days=3)
    result = correct_event_ts(client_ts=sent_at - timedelta(minutes=5), sent_at=sent_at, received_at=RECEIVED)
    assert result.event_ts == RECEIVED - timedelta(minutes=5)
    assert result.flag is TimestampFlag.OK


def test_an_event_queued_longer_than_the_late_limit_is_flagged_not_dropped() -> None:
    sent_at = RECEIVED
    result = correct_event_ts(client_ts=sent_at - timedelta(days=9), sent_at=sent_at, received_at=RECEIVED)
    assert result.flag is TimestampFlag.TOO_OLD
    assert result.event_ts == RECEIVED - timedelta(days=9)


def test_an_event_after_its_send_time_is_clamped_and_flagged_future() -> None:
    sent_at = RECEIVED
    result = correct_event_ts(client_ts=sent_at + timedelta(minutes=10), sent_at=sent_at, received_at=RECEIVED)
    assert result.flag is TimestampFlag.FUTURE
    assert result.event_ts == RECEIVED


def test_without_sent_at_the_server_time_is_used() -> None:
    result = correct_event_ts(client_ts=RECEIVED - timedelta(hours=5), sent_at=None, received_at=RECEIVED)
    assert result.event_ts == RECEIVED
    assert result.flag is TimestampFlag.OK
