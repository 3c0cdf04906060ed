"""The pipeline page's answers: how fresh the data is, each stage's lag, the latest QA results.

Owns "data as of", which every workspace page shows: the ``received_at`` of the newest heartbeat
visible in the warehouse (a heartbeat travels the whole path an event travels), read with the same
named query as ``funnelstream status`` and the freshness gauge, and judged stale against the same
``FS_QA__FRESHNESS_DEGRADED_S``. Invariant: no heartbeat in the last day is "unknown", never "fresh".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from clickhouse.backend import WarehouseReads
from clickhouse.qa.settings import QASettings
from clickhouse.workspace import charts
from clickhouse.workspace.answers import Answer, Figure, OutputFormat, Rows, answer, respond_answer
from clickhouse.workspace.panels import PanelLink
from clickhouse.workspace.params import reader_of

AS_OF_QUERY = "qa_heartbeat_freshness"
"""The heartbeat freshness ``funnelstream status`` and the heartbeat's gauges read: one definition."""

LAG_QUERY = "pipeline_lag"
QA_QUERY = "qa_latest"
QA_STATUSES = ("error", "fail", "pass")
MAX_LAG_MINUTES = 7 * 24 * 60

router = APIRouter()
Minutes = Annotated[int, Query(ge=1, le=MAX_LAG_MINUTES, description="The last this many minutes of insertions")]


@cache
def stale_after_s() -> float:
    """Age past which the pipeline is behind (``FS_QA__FRESHNESS_DEGRADED_S``), read once per process."""
    return QASettings().qa.freshness_degraded_s


@dataclass(frozen=True, slots=True)
class AsOf:
    as_of: datetime | None
    """``received_at`` of the newest heartbeat in the warehouse; None: none in the last day."""
    age_s: float | None
    stale: bool
    """Older than ``stale_after_s``, or no heartbeat at all: late data may still be on its way."""
    stale_after_s: float
    heartbeats: int
    last_latency_s: float | None
    """How long that heartbeat took from emission to insertion."""

    def as_row(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "age_s": self.age_s,
            "stale": self.stale,
            "stale_after_s": self.stale_after_s,
            "heartbeats": self.heartbeats,
            "last_latency_s": self.last_latency_s,
        }


def _as_of_answer(reader: WarehouseReads, now: datetime | None) -> tuple[AsOf, Answer]:
    result = answer(reader, AS_OF_QUERY, {"now": now or datetime.now(UTC)})
    row = result.rows[0]
    heartbeats = int(row["heartbeats"])
    limit = stale_after_s()
    if heartbeats == 0:
        return AsOf(None, None, True, limit, 0, None), result
    as_of = datetime.fromisoformat(str(row["last_received_at"])).replace(tzinfo=UTC)
    age_s = float(row["age_s"])
    return AsOf(as_of, age_s, age_s > limit, limit, heartbeats, float(row["last_latency_s"])), result


def data_as_of(reader: WarehouseReads, now: datetime | None = None) -> AsOf:
    """The newest heartbeat that went through the whole pipeline, and how old it is at ``now``."""
    return _as_of_answer(reader, now)[0]


def _freshness_chart(rows: Rows) -> Figure:
    return charts.freshness(
        [
            {"source": "heartbeat (end to end)", "age_s": row["age_s"], "last_seen_at": row["as_of"]}
            for row in rows
            if row["age_s"] is not None
        ]
    )


@router.get("/v1/pipeline/as-of")
def as_of(
    request: Request,
    format: OutputFormat = "json",
    chart: bool = False,
) -> Response:
    started = time.perf_counter()
    fresh, result = _as_of_answer(reader_of(request), None)
    row = fresh.as_row()
    shown = Answer([row], result.sql, row)
    return respond_answer(shown, format, started, _freshness_chart, chart=chart)


def lag(reader: WarehouseReads, minutes: int = 60, now: datetime | None = None) -> Answer:
    """P50/P90/P99 of each stage's lag per source (and '(all)'), over the last ``minutes`` before ``now``."""
    if not 1 <= minutes <= MAX_LAG_MINUTES:
        raise ValueError(f"minutes: must be within 1..{MAX_LAG_MINUTES}, not {minutes}")
    return answer(reader, LAG_QUERY, {"now": now or datetime.now(UTC), "minutes": minutes}, minutes=minutes)


def qa_latest(reader: WarehouseReads, now: datetime | None = None) -> Answer:
    """Every QA check's latest recorded result, errors and failures first."""
    return answer(reader, QA_QUERY, {"now": now or datetime.now(UTC)})


def _qa_chart(rows: Rows) -> Figure:
    counts = [sum(1 for row in rows if row["status"] == status) for status in QA_STATUSES]
    return charts.bar(list(QA_STATUSES), {"checks": counts}, title="Latest QA results", value_title="checks")


@router.get("/v1/pipeline/lag")
def lag_route(request: Request, minutes: Minutes = 60, format: OutputFormat = "json", chart: bool = False) -> Response:
    started = time.perf_counter()
    return respond_answer(lag(reader_of(request), minutes), format, started, charts.pipeline_lag, chart=chart)


@router.get("/v1/pipeline/qa")
def qa_route(request: Request, format: OutputFormat = "json", chart: bool = False) -> Response:
    started = time.perf_counter()
    return respond_answer(qa_latest(reader_of(request)), format, started, _qa_chart, chart=chart)


def pipeline_panels() -> list[PanelLink]:
    """The pipeline page: freshness (data as of), each stage's lag, the latest QA results."""
    return [
        PanelLink("freshness", "Data as of: the newest heartbeat through the whole pipeline", "/v1/pipeline/as-of"),
        PanelLink("lag", "Lag per stage and source, last hour", "/v1/pipeline/lag"),
        PanelLink("qa", "Latest QA results", "/v1/pipeline/qa"),
    ]
