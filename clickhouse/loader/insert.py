"""The insert step: one table's rows into the warehouse, or backpressure when it is away.

Owns which insert failures are transient (:func:`is_transient`): those come back as a
:class:`Backpressure` value for the loop to act on; any other failure raises. The step never
retries by itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from clickhouse.backend import TRANSIENT_ERROR_CODES, Warehouse
from clickhouse.errors import QueryError, WarehouseUnavailable
from funnelstream.errors import TransientError

# Per-table INSERT settings. `events` collapses replays at merge and every reader tolerates a
# duplicate until then (FINAL, or aggregates a duplicate cannot change); collapsing inside each
# insert block as well re-copies every row of every column and costs more than the rest of the
# insert, materialized views included.
INSERT_SETTINGS: dict[str, dict[str, Any]] = {"events": {"optimize_on_insert": 0}}


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, TransientError):
        return True
    return isinstance(exc, QueryError) and exc.code in TRANSIENT_ERROR_CODES


@dataclass(frozen=True, slots=True)
class Inserted:
    table: str
    rows: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Backpressure:
    """The warehouse refused ``table`` for a transient reason: pause, wait, try the same rows again."""

    table: str
    error: Exception


def insert_table(warehouse: Warehouse, table: str, data: pa.Table) -> Inserted | Backpressure:
    started = time.perf_counter()
    try:
        warehouse.insert_arrow(table, data, INSERT_SETTINGS.get(table))
    except (WarehouseUnavailable, QueryError, TransientError) as exc:
        if not is_transient(exc):
            raise
        return Backpressure(table, exc)
    return Inserted(table, data.num_rows, time.perf_counter() - started)
