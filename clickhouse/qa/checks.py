"""The data-quality checks: each is a named SQL file, a threshold and a severity.

Every ``clickhouse/queries/qa_<name>.sql`` returns rows of ``subject, value, affected, total,
detail``. A row whose ``value`` exceeds the check's threshold is a finding; a check with a finding
fails. Values are shares (0..1) unless the description says otherwise, so thresholds read alike.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from clickhouse.qa.errors import UnknownCheck
from clickhouse.queries import QUERIES_DIR


class Severity(enum.StrEnum):
    ERROR = "error"
    """Data is wrong or lost: the run fails and gates the job."""
    WARNING = "warning"
    """Worth a look; fails the run only with ``--fail-on warning``."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    description: str
    threshold: float
    severity: Severity
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """Named query parameters besides the window (``from``, ``to``)."""

    @property
    def query_file(self) -> Path:
        return QUERIES_DIR / f"qa_{self.name}.sql"

    def sql(self) -> str:
        return _read(self.query_file)


@cache
def _read(path: Path) -> str:
    return path.read_text()


CHECKS: tuple[Check, ...] = (
    Check(
        "schema_violations",
        "dead letters per stage, source and reason, as a share of what the source sent",
        threshold=0.01,
        severity=Severity.ERROR,
    ),
    Check(
        "orphan_steps",
        "tool, inference or save without an upload of the image; save without inference; score without save",
        threshold=0.01,
        severity=Severity.ERROR,
        parameters={"lookback_days": 7},
    ),
    Check(
        "steps_out_of_order",
        "images whose first event of a later funnel step precedes the earlier step",
        threshold=0.01,
        severity=Severity.WARNING,
        parameters={"tolerance_ms": 1000},
    ),
    Check(
        "duplicates",
        "rows sharing an event_id before merge, and equal content under different event_ids",
        threshold=0.001,
        severity=Severity.WARNING,
    ),
    Check(
        "late_events",
        "events late for their session or older than the late limit, per source",
        threshold=0.02,
        severity=Severity.WARNING,
    ),
    Check(
        "clock_skew",
        "events whose device clock is off by more than skew_limit_s, per source (distribution in detail)",
        threshold=0.05,
        severity=Severity.WARNING,
        parameters={"skew_limit_s": 300},
    ),
    Check(
        "future_timestamps",
        "events timestamped after they were sent or received, per source",
        threshold=0.001,
        severity=Severity.WARNING,
    ),
    Check(
        "unknown_dimensions",
        "tool and inference events with a missing or unknown dimension id",
        threshold=0.0,
        severity=Severity.ERROR,
    ),
    Check(
        "volume_anomalies",
        "hourly volume per event type vs the trailing 7-day same-hour baseline (value: z-score)",
        threshold=4.0,
        severity=Severity.WARNING,
        parameters={"min_baseline_days": 3, "min_volume": 20},
    ),
    Check(
        "sessions_without_events",
        "closed-enough sessions with none of their events in the warehouse",
        threshold=0.0,
        severity=Severity.ERROR,
        parameters={"grace_s": 600},
    ),
    Check(
        "inference_without_result",
        "inference requests older than grace_s with no inference_completed for their job",
        threshold=0.01,
        severity=Severity.ERROR,
        parameters={"grace_s": 600},
    ),
    Check(
        "zero_gap_steps",
        "consecutive funnel steps of one image with no time between them (a batch sent without sent_at "
        "shares one event_ts), per source",
        threshold=0.01,
        severity=Severity.WARNING,
    ),
)


def select_checks(
    names: Iterable[str] = (), thresholds: Mapping[str, float] | None = None, checks: Iterable[Check] = CHECKS
) -> list[Check]:
    """The checks named (all when none are), with threshold overrides applied."""
    by_name = {check.name: check for check in checks}
    known = sorted(by_name)
    wanted = list(names) or list(by_name)
    for name in [*wanted, *(thresholds or {})]:
        if name not in by_name:
            raise UnknownCheck(name, known)
    overrides = thresholds or {}
    return [
        replace(by_name[name], threshold=overrides[name]) if name in overrides else by_name[name] for name in wanted
    ]
