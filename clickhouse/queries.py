"""Named, parameterized SQL (``clickhouse/queries/*.sql``) and the typed calls the API makes.

Every file runs as it is from clickhouse-client with ``--param_name=value``; this module only
fills in parameters and defaults. The funnel queries implement docs/analytics-definitions.md
("Funnels"): entries in ``[from, to)``, later steps up to ``to + window``, so an answer is only
final once ``to + window`` is past (``FunnelRequest.complete``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from clickhouse.backend import WarehouseReads
from clickhouse.errors import UnknownQuery
from funnelstream.contract import EventType

QUERIES_DIR = Path(__file__).parent / "queries"
PARAMETER = re.compile(r"\{(\w+):([^{}]+?)\}")

DEFAULT_STEPS: tuple[str, ...] = (
    EventType.IMAGE_UPLOADED,
    EventType.TOOL_SELECTED,
    EventType.INFERENCE_REQUESTED,
    EventType.IMAGE_SAVED,
    EventType.SCORE_SUBMITTED,
)
MAX_STEPS = 5


class Unit(StrEnum):
    IMAGE = "input_id"
    DEVICE = "anonymous_id"
    SESSION = "session_id"


class Breakdown(StrEnum):
    NONE = "none"
    TOOL = "tool"
    INFERENCE_TYPE = "inference_type"
    VARIANT = "variant"
    DAY = "day"
    SOURCE = "source"
    BROWSER = "browser"
    OS = "os"
    DEVICE = "device"
    SIZE = "size"


# Image size buckets of an upload's width x height, lowest first: (name, pixels from, pixels to);
# the same bounds as migration 0011's size_bucket (1 MP = 1_000_000 pixels).
SIZE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("small", 0, 1_000_000),
    ("medium", 1_000_000, 4_000_000),
    ("large", 4_000_000, None),
)


def size_bucket(width: int, height: int) -> str:
    pixels = width * height
    return next(name for name, low, high in SIZE_BUCKETS if low <= pixels and (high is None or pixels < high))


class FunnelMode(StrEnum):
    ORDERED = "ordered"
    STRICT = "strict"


@cache
def load(name: str) -> str:
    path = QUERIES_DIR / f"{name}.sql"
    if not path.is_file():
        raise UnknownQuery(name, names())
    return path.read_text()


def names() -> list[str]:
    return sorted(path.stem for path in QUERIES_DIR.glob("*.sql"))


def parameters_of(sql: str) -> dict[str, str]:
    """The ``{name:Type}`` parameters a statement declares."""
    return {match.group(1): match.group(2).strip() for match in PARAMETER.finditer(sql)}


def run(warehouse: WarehouseReads, name: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return warehouse.query_rows(load(name), parameters)


@dataclass(frozen=True, slots=True)
class FunnelFilters:
    """Event filters of a funnel, '' = any: an event that carries the dimension (non-NULL) must have
    the value, an event without it passes; ``variant`` keeps only the devices that are clean units
    of the request's experiment in that arm, from their first exposure on."""

    tool: str = ""
    inference_type: str = ""
    variant: str = ""
    source: str = ""
    browser: str = ""
    os: str = ""
    device: str = ""
    size: str = ""

    def parameters(self) -> dict[str, str]:
        return {
            "filter_tool": self.tool,
            "filter_inference_type": self.inference_type,
            "filter_variant": self.variant,
            "filter_source": self.source,
            "filter_browser": self.browser,
            "filter_os": self.os,
            "filter_device": self.device,
            "filter_size": self.size,
        }


@dataclass(frozen=True, slots=True)
class FunnelRequest:
    start: datetime
    end: datetime
    steps: tuple[str, ...] = DEFAULT_STEPS
    window_s: int = 3600
    unit: Unit = Unit.IMAGE
    mode: FunnelMode = FunnelMode.ORDERED
    breakdown: Breakdown = Breakdown.NONE
    experiment: str = ""
    exclude: str = ""
    filters: FunnelFilters = FunnelFilters()

    def __post_init__(self) -> None:
        if not 1 <= len(self.steps) <= MAX_STEPS:
            raise ValueError(f"steps: between 1 and {MAX_STEPS} event types, got {len(self.steps)}")
        known = {str(kind) for kind in EventType}
        for step in (*self.steps, *([self.exclude] if self.exclude else [])):
            if step not in known:
                raise ValueError(f"steps: unknown event type {step!r}; expected one of {', '.join(sorted(known))}")
        if self.end <= self.start:
            raise ValueError("to: must be after from")
        if self.window_s <= 0:
            raise ValueError("window: must be a positive number of seconds")
        if self.breakdown is Breakdown.VARIANT and not self.experiment:
            raise ValueError(
                "experiment: required with breakdown=variant (the experiment key whose variants to compare)"
            )
        if self.filters.variant and not self.experiment:
            raise ValueError("experiment: required with a variant filter (the experiment key whose arm to keep)")
        sizes = [name for name, _, _ in SIZE_BUCKETS]
        if self.filters.size and self.filters.size not in sizes:
            raise ValueError(f"size: unknown size bucket {self.filters.size!r}; expected one of {', '.join(sizes)}")

    @property
    def complete_at(self) -> datetime:
        """When no late step can change the answer any more: ``to + window``."""
        return self.end + timedelta(seconds=self.window_s)

    def complete(self, now: datetime | None = None) -> bool:
        return self.complete_at <= (now or datetime.now(UTC))

    def completeness(self) -> dict[str, Any]:
        """The answer's ``complete`` (``to + window`` is past: no late step can change it) and ``complete_at``."""
        return {"complete": self.complete(), "complete_at": self.complete_at.isoformat()}

    def query_name(self) -> str:
        return "funnel_strict" if self.mode is FunnelMode.STRICT else "funnel"

    def parameters(self) -> dict[str, Any]:
        padded = list(self.steps) + [""] * (MAX_STEPS - len(self.steps))
        return {
            **{f"step{index + 1}": str(step) for index, step in enumerate(padded)},
            "from": self.start,
            "to": self.end,
            "window_s": self.window_s,
            "unit": str(self.unit),
            "breakdown": str(self.breakdown),
            "experiment": self.experiment,
            "exclude": self.exclude,
            "mode": str(self.mode),
            **self.filters.parameters(),
        }


def funnel(warehouse: WarehouseReads, request: FunnelRequest) -> list[dict[str, Any]]:
    return run(warehouse, request.query_name(), request.parameters())


def time_to_convert(warehouse: WarehouseReads, request: FunnelRequest) -> list[dict[str, Any]]:
    return run(warehouse, "time_to_convert", request.parameters())


def top_experiment(warehouse: WarehouseReads, start: datetime, end: datetime) -> str:
    """The experiment a variant breakdown compares when none is named: the range's top one ('' if none)."""
    top = run(warehouse, "top_experiment", {"from": start, "to": end})
    return str(top[0]["experiment_key"]) if top else ""


def task_times(warehouse: WarehouseReads, start: datetime, end: datetime, limit: int = 10_000) -> list[dict[str, Any]]:
    return run(warehouse, "task_times", {"from": start, "to": end, "limit": limit})


def task_time_summary(
    warehouse: WarehouseReads,
    start: datetime,
    end: datetime,
    breakdown: Breakdown = Breakdown.NONE,
    experiment: str = "",
) -> list[dict[str, Any]]:
    if breakdown is Breakdown.VARIANT and not experiment:
        raise ValueError("experiment: required with breakdown=variant (the experiment key whose variants to compare)")
    return run(
        warehouse,
        "task_time_summary",
        {"from": start, "to": end, "breakdown": str(breakdown), "experiment": experiment},
    )


def daily_conversion(
    warehouse: WarehouseReads, start: datetime, end: datetime, window_s: int = 3600
) -> list[dict[str, Any]]:
    return run(warehouse, "daily_conversion", {"from": start, "to": end, "window_s": window_s})


def scores_by_model(warehouse: WarehouseReads, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return run(warehouse, "scores_by_model", {"from": start, "to": end})


def freshness(warehouse: WarehouseReads, minutes: int = 5) -> list[dict[str, Any]]:
    return run(warehouse, "freshness", {"minutes": minutes})
