"""One answer of an analysis route: its rows, the SQL that produced them, and how it is sent.

Owns the runnable form of a named query (``inline_sql``: every ``{name:Type}`` replaced by a
literal of that type, so the text runs as is on ClickHouse) and the one response shape of every
route behind a chart: JSON ``{rows, row_count, elapsed_ms, sql, ...}``, with the Plotly figure
when asked, or CSV of the same rows.
Invariant: the SQL an answer shows is the statement that ran, with the parameters it ran with.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import orjson
from fastapi.responses import Response

from clickhouse import queries
from clickhouse.backend import WarehouseReads, parameter_text

OutputFormat = Literal["json", "csv"]
Rows = list[dict[str, Any]]
Figure = dict[str, Any]
ChartOf = Callable[[Rows], Figure]
"""Rows of an answer to a Plotly figure (``{"data": [...], "layout": {...}}``)."""

_NUMERIC = ("UInt", "Int", "Float", "Decimal")


@dataclass(frozen=True, slots=True)
class Answer:
    rows: Rows
    sql: str
    """The statement that ran, runnable as is (``inline_sql``); '' when no single statement did."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further fields of the JSON answer, e.g. ``complete`` and ``complete_at``."""


def literal(value: Any, type_name: str) -> str:
    """``value`` as a ClickHouse literal of ``type_name``, as the server would read the parameter."""
    text = parameter_text(value)
    if text == "\\N":
        return f"CAST(NULL AS {type_name})"
    quoted = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if type_name == "String":
        return quoted
    if type_name.startswith(_NUMERIC) and _is_number(text):
        return text
    return f"CAST({quoted} AS {type_name})"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.lower() not in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


def inline_sql(sql: str, parameters: dict[str, Any]) -> str:
    """``sql`` with every declared parameter replaced by its value's literal; one missing is a KeyError."""
    return queries.PARAMETER.sub(lambda match: literal(parameters[match.group(1)], match.group(2).strip()), sql)


def answer(reader: WarehouseReads, name: str, parameters: dict[str, Any], **extra: Any) -> Answer:
    """Runs the named query and keeps its runnable text beside the rows."""
    sql = queries.load(name)
    return Answer(reader.query_rows(sql, parameters), inline_sql(sql, parameters), extra)


def _default(value: Any) -> Any:
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def csv_text(rows: Rows) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else _cell(value) for key, value in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    return value if isinstance(value, str | int | float) else orjson.dumps(value, default=_default).decode().strip('"')


def json_bytes(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, default=_default, option=orjson.OPT_NON_STR_KEYS)


def respond(rows: Rows, output: OutputFormat, started: float, **extra: Any) -> Response:
    """Rows as CSV, or as JSON ``{rows, row_count, elapsed_ms, **extra}``."""
    if output == "csv":
        # A CSV body has no room for the answer's fields; whether it is final goes in a header.
        headers = {"X-Complete": str(extra["complete"]).lower()} if "complete" in extra else None
        return Response(csv_text(rows), media_type="text/csv", headers=headers)
    body = {"rows": rows, "row_count": len(rows), "elapsed_ms": round((time.perf_counter() - started) * 1000, 3)}
    body.update(extra)
    return Response(json_bytes(body), media_type="application/json")


def respond_answer(
    result: Answer, output: OutputFormat, started: float, chart_of: ChartOf | None = None, *, chart: bool = False
) -> Response:
    """The route's answer: CSV of the rows, or JSON with the SQL, and the figure when ``chart``."""
    figure = {"figure": chart_of(result.rows)} if chart and chart_of is not None and output == "json" else {}
    return respond(result.rows, output, started, sql=result.sql, **result.extra, **figure)
