"""The clock-skew rule of docs/design.md, "Event contract": one function, for ingest and any replay."""

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
    event_ts, flag = SkewRule.at(received_at, late_limit, future_tolerance).apply(client_ts, sent_at)
    skew = timedelta(0) if sent_at is None else sent_at - received_at
    return CorrectedTime(event_ts, flag, skew)


@dataclass(frozen=True, slots=True)
class SkewRule:
    """:func:`correct_event_ts` for every event received at one instant: the collector applies it
    to each event of a request, so the bounds are computed once."""

    received_at: datetime
    latest: datetime
    oldest: datetime

    @classmethod
    def at(
        cls,
        received_at: datetime,
        late_limit: timedelta = DEFAULT_LATE_LIMIT,
        future_tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE,
    ) -> SkewRule:
        return cls(received_at, received_at + future_tolerance, received_at - late_limit)

    def apply(self, client_ts: datetime, sent_at: datetime | None) -> tuple[datetime, TimestampFlag]:
        """``(event_ts, flag)``; raises OverflowError for readings centuries apart."""
        if sent_at is None:
            return self.received_at, TimestampFlag.OK
        event_ts = self.received_at - (sent_at - client_ts)
        if event_ts > self.latest:
            return self.received_at, TimestampFlag.FUTURE
        if event_ts < self.oldest:
            return event_ts, TimestampFlag.TOO_OLD
        return event_ts, TimestampFlag.OK
