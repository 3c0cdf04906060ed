"""The clock-skew rule (DESIGN §4): one function, used by ingest and by anything that replays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from funnelstream.contract import TimestampFlag

DEFAULT_LATE_LIMIT = timedelta(days=7)
DEFAULT_FUTURE_TOLERANCE = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class CorrectedTime:
    event_ts: datetime
    flag: TimestampFlag
    skew: timedelta
    """How far the device clock was ahead of the server's (negative: behind)."""


def correct_event_ts(
    *,
    client_ts: datetime,
    sent_at: datetime | None,
    received_at: datetime,
    late_limit: timedelta = DEFAULT_LATE_LIMIT,
    future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE,
) -> CorrectedTime:
    """``event_ts = received_at − (sent_at − client_ts)``.

    Only the difference of two readings of the same device clock is trusted, so a device whose
    clock is hours off still gets a correct event time. Without ``sent_at`` the offline age is
    unknown and the server time is used. A result in the future is clamped to ``received_at``;
    one older than ``late_limit`` is kept and flagged.
    """
    if sent_at is None:
        return CorrectedTime(received_at, TimestampFlag.OK, timedelta(0))
    skew = sent_at - received_at
    event_ts = received_at - (sent_at - client_ts)
    if event_ts > received_at + future_tolerance:
        return CorrectedTime(received_at, TimestampFlag.FUTURE, skew)
    if received_at - event_ts > late_limit:
        return CorrectedTime(event_ts, TimestampFlag.TOO_OLD, skew)
    return CorrectedTime(event_ts, TimestampFlag.OK, skew)
