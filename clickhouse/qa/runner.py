"""Run the QA checks over a time window, record them in ``qa_results`` and print them."""

from __future__ import annotations

import enum
import logging
import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from clickhouse.backend import Warehouse
from clickhouse.errors import QueryError
from clickhouse.qa.checks import Check, Severity
from clickhouse.qa.errors import InvalidWindow, ResultsTableMissing
from clickhouse.qa.remote import WarehouseApi

log = logging.getLogger("funnelstream.qa")

RESULTS_TABLE = "qa_results"
MAX_DETAILS = 20
"""Findings kept per check in ``qa_results.details``; the worst ones."""


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 -- a check status, not a secret
    FAIL = "fail"
    ERROR = "error"
    """The query itself failed; the data was not judged."""


@dataclass(frozen=True, slots=True)
class Finding:
    subject: str
    value: float
    affected: int
    total: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "value": self.value,
            "affected": self.affected,
            "total": self.total,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    status: Status
    rows: list[Finding]
    """Every row the query returned, worst first."""
    duration_ms: float
    error: str | None = None

    @property
    def failing(self) -> list[Finding]:
        return [row for row in self.rows if row.value > self.check.threshold]

    @property
    def worst(self) -> Finding | None:
        return self.rows[0] if self.rows else None


@dataclass(frozen=True, slots=True)
class QARun:
    run_id: uuid.UUID
    run_at: datetime
    window_from: datetime
    window_to: datetime
    results: list[CheckResult] = field(default_factory=list)

    def gate_failures(self, fail_on: Severity = Severity.ERROR) -> list[CheckResult]:
        """Checks that make the run fail: errors always; failures at ``fail_on`` or worse."""
        counted = {Severity.ERROR} if fail_on is Severity.ERROR else {Severity.ERROR, Severity.WARNING}
        return [
            result
            for result in self.results
            if result.status is Status.ERROR or (result.status is Status.FAIL and result.check.severity in counted)
        ]


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InvalidWindow(name, f"{value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def _finding(row: dict[str, Any]) -> Finding:
    value = float(row["value"]) if row.get("value") is not None else 0.0
    # NaN compares false with any threshold and would pass silently; treat it as a finding.
    if math.isnan(value):
        value = math.inf
    return Finding(
        subject=str(row.get("subject") or ""),
        value=value,
        affected=int(row.get("affected") or 0),
        total=int(row.get("total") or 0),
        detail=str(row.get("detail") or ""),
    )


Reader = Warehouse | WarehouseApi
"""Anything that answers ``query_rows``: the engine itself, or ``warehouse serve`` over HTTP."""


def run_check(warehouse: Reader, check: Check, window_from: datetime, window_to: datetime) -> CheckResult:
    parameters = {"from": window_from, "to": window_to, **check.parameters}
    started = time.perf_counter()
    try:
        rows = warehouse.query_rows(check.sql(), parameters)
    except QueryError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        log.error("qa check could not run", extra={"check": check.name, "error": exc.message, "code": exc.code})
        return CheckResult(check, Status.ERROR, [], elapsed, error=exc.message)
    elapsed = (time.perf_counter() - started) * 1000
    # Worst first; ties by subject so a run reads (and stores) the same way every time.
    findings = sorted((_finding(row) for row in rows), key=lambda f: (-f.value, f.subject))
    status = Status.FAIL if any(f.value > check.threshold for f in findings) else Status.PASS
    result = CheckResult(check, status, findings, elapsed)
    log.info(
        "qa check done",
        extra={
            "check": check.name,
            "status": str(status),
            "severity": str(check.severity),
            "value": result.worst.value if result.worst else 0.0,
            "threshold": check.threshold,
            "failing_subjects": len(result.failing),
            "duration_ms": round(elapsed, 1),
        },
    )
    return result


def run_checks(
    warehouse: Reader,
    checks: Iterable[Check],
    window_from: datetime,
    window_to: datetime,
    *,
    run_at: datetime | None = None,
) -> QARun:
    """Run every check; one that cannot run is recorded as an error and the others go on."""
    window_from, window_to = _utc(window_from, "from"), _utc(window_to, "to")
    if window_from >= window_to:
        raise InvalidWindow("from", f"{window_from.isoformat()} is not before to={window_to.isoformat()}")
    run = QARun(uuid.uuid4(), run_at or datetime.now(UTC), window_from, window_to)
    for check in checks:
        run.results.append(run_check(warehouse, check, window_from, window_to))
    return run


def _result_row(run: QARun, result: CheckResult) -> dict[str, Any]:
    worst = result.worst
    failing = result.failing
    kept = (failing or result.rows)[:MAX_DETAILS]
    details: dict[str, Any] = {"findings": [f.as_dict() for f in kept], "rows": len(result.rows)}
    if result.error:
        details["error"] = result.error
    return {
        "run_id": str(run.run_id),
        "run_at": run.run_at,
        "window_from": run.window_from,
        "window_to": run.window_to,
        "check_name": result.check.name,
        "severity": str(result.check.severity),
        "status": str(result.status),
        "threshold": float(result.check.threshold),
        "value": worst.value if worst and math.isfinite(worst.value) else (1e308 if worst else 0.0),
        "subject": worst.subject if worst else "",
        "affected": sum(f.affected for f in failing),
        "total": max((f.total for f in result.rows), default=0),
        "failing_subjects": len(failing),
        "details": orjson.dumps(details).decode(),
        "duration_ms": result.duration_ms,
    }


_UTC_MS = pa.timestamp("ms", tz="UTC")
# What qa_results (migration 0100) takes, column by column; _result_row fills the same names.
_RESULT_SCHEMA = pa.schema(
    {
        "run_id": pa.string(),
        "run_at": _UTC_MS,
        "window_from": _UTC_MS,
        "window_to": _UTC_MS,
        "check_name": pa.string(),
        "severity": pa.string(),
        "status": pa.string(),
        "threshold": pa.float64(),
        "value": pa.float64(),
        "subject": pa.string(),
        "affected": pa.uint64(),
        "total": pa.uint64(),
        "failing_subjects": pa.uint32(),
        "details": pa.string(),
        "duration_ms": pa.float64(),
    }
)


def write_results(warehouse: Warehouse, run: QARun) -> int:
    """One row per check in ``qa_results``."""
    rows = warehouse.query_rows(
        "SELECT count() AS n FROM system.tables WHERE database = {database:String} AND name = {table:String}",
        {"database": warehouse.database, "table": RESULTS_TABLE},
    )
    if not rows or int(rows[0]["n"]) == 0:
        raise ResultsTableMissing(warehouse.database)
    table = pa.Table.from_pylist([_result_row(run, result) for result in run.results], schema=_RESULT_SCHEMA)
    return warehouse.insert_arrow(RESULTS_TABLE, table)


_STATUS_STYLE = {Status.PASS: "green", Status.FAIL: "red", Status.ERROR: "magenta"}


def _format_value(value: float, check: Check) -> str:
    if not math.isfinite(value):
        return "n/a"
    if check.name == "volume_anomalies":
        return f"z={value:.1f}"
    return f"{value:.2%}" if value < 10 else f"{value:.1f}"


def render(run: QARun, console: Console) -> None:
    table = Table(
        title=f"QA {run.window_from:%Y-%m-%d %H:%M} → {run.window_to:%Y-%m-%d %H:%M} UTC  (run {run.run_id})",
        title_justify="left",
    )
    table.add_column("check")
    table.add_column("severity")
    table.add_column("status")
    table.add_column("worst", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("failing", justify="right")
    table.add_column("worst subject / detail", overflow="fold")
    for result in run.results:
        check = result.check
        worst = result.worst
        style = _STATUS_STYLE[result.status]
        if result.error:
            note = result.error.splitlines()[0][:200]
        elif worst is None:
            note = "nothing found in the window"
        else:
            note = worst.subject + (f" — {worst.detail}" if worst.detail else "")
        table.add_row(
            check.name,
            str(check.severity),
            f"[{style}]{result.status}[/{style}]",
            _format_value(worst.value, check) if worst else "-",
            _format_value(check.threshold, check),
            str(len(result.failing)),
            note,
        )
    console.print(table)
