"""``funnelstream forget``: delete one person's images and warehouse rows, and count what went.

A person is an ``anonymous_id`` (one device) or a ``user_id`` (every device that user logged in on).
Invariant, for a rerun after a failure: object keys are read from the events first, objects deleted
next, rows last, so nothing is left that can no longer be found. Kafka topics keep their messages
until retention (``FS_KAFKA__RETENTION_MS``); they are not rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from clickhouse.backend import Warehouse, open_warehouse, quote_identifier
from clickhouse.client import api_is_up
from clickhouse.errors import WarehouseError
from clickhouse.settings import WarehouseSettings
from funnelstream.objectstore import MinioStore, key_of_url, proposals_prefix

# Rows of a table are a person's when one of these columns says so; dlq_events has the original
# message key and payload instead of columns.
PERSON_COLUMNS = ("anonymous_id", "user_id")
DLQ_TABLE = "dlq_events"


class ForgetError(WarehouseError):
    """The deletion cannot start as asked; nothing was deleted."""


@dataclass
class ForgetReport:
    anonymous_ids: list[str]
    objects_deleted: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        lines = [
            f"devices: {len(self.anonymous_ids)}",
            f"images deleted: {self.objects_deleted}",
            f"rows deleted: {sum(self.rows_deleted.values())}",
        ]
        lines += [f"  {table}: {count}" for table, count in sorted(self.rows_deleted.items()) if count]
        return lines


def _person_condition(table_columns: set[str], table: str) -> str | None:
    """A WHERE clause over ``{ids:Array(String)}`` and ``{user_id:Nullable(String)}`` for one table."""
    parts = []
    if "anonymous_id" in table_columns:
        parts.append("has({ids:Array(String)}, anonymous_id)")
    if "user_id" in table_columns:
        parts.append("({user_id:Nullable(String)} IS NOT NULL AND user_id = {user_id:Nullable(String)})")
    if table == DLQ_TABLE:
        parts.append("has({ids:Array(String)}, ifNull(original_key, ''))")
        parts.append("has({ids:Array(String)}, JSONExtractString(payload, 'anonymous_id'))")
        parts.append(
            "({user_id:Nullable(String)} IS NOT NULL "
            "AND JSONExtractString(payload, 'user_id') = {user_id:Nullable(String)})"
        )
    return " OR ".join(parts) if parts else None


def _tables(warehouse: Warehouse) -> dict[str, set[str]]:
    """Tables that store rows (views and dictionaries are derived) with their column names."""
    rows = warehouse.query_rows(
        "SELECT c.table AS table_name, groupArray(c.name) AS columns "
        "FROM system.columns AS c INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = currentDatabase() AND t.engine LIKE '%MergeTree%' GROUP BY c.table"
    )
    return {str(row["table_name"]): set(row["columns"]) for row in rows}


def _anonymous_ids(warehouse: Warehouse, anonymous_id: str | None, user_id: str | None) -> list[str]:
    if anonymous_id is not None:
        return [anonymous_id]
    rows = warehouse.query_rows(
        "SELECT DISTINCT anonymous_id FROM events WHERE user_id = {user_id:String}", {"user_id": user_id}
    )
    return sorted(str(row["anonymous_id"]) for row in rows)


def _object_keys(warehouse: Warehouse, parameters: dict[str, Any], bucket: str) -> tuple[set[str], set[str]]:
    rows = warehouse.query_rows(
        "SELECT DISTINCT input_url, mask_url, inference_url, "
        "nullIf(JSONExtractString(properties, 'input_url'), '') AS job_input_url, "
        "if(event_type = 'segments_proposed', toString(job_id), NULL) AS proposals_job "
        f"FROM events WHERE {_person_condition({'anonymous_id', 'user_id'}, 'events')}",
        parameters,
    )
    keys: set[str] = set()
    prefixes: set[str] = set()
    for row in rows:
        for column in ("input_url", "mask_url", "inference_url", "job_input_url"):
            url = row.get(column)
            key = key_of_url(str(url), bucket) if url else None
            if key:
                keys.add(key)
        if row.get("proposals_job"):
            prefixes.add(proposals_prefix(UUID(str(row["proposals_job"]))))
    return keys, prefixes


def _delete_objects(store: MinioStore, keys: set[str], prefixes: set[str]) -> int:
    for prefix in prefixes:
        keys |= set(store.keys(prefix))
    # A key already gone (a rerun, or never uploaded) is not counted.
    return sum(store.delete(key) for key in sorted(keys))


def forget_person(
    settings: WarehouseSettings,
    *,
    anonymous_id: str | None = None,
    user_id: str | None = None,
    warehouse: Warehouse | None = None,
    store: MinioStore | None = None,
) -> ForgetReport:
    if (anonymous_id is None) == (user_id is None):
        raise ForgetError("give exactly one of anonymous_id and user_id")
    own_warehouse = warehouse is None
    if warehouse is None:
        warehouse = _open_for_writes(settings)
    store = store or MinioStore.of(settings.s3)
    try:
        ids = _anonymous_ids(warehouse, anonymous_id, user_id)
        parameters = {"ids": ids, "user_id": user_id}
        report = ForgetReport(anonymous_ids=ids)
        keys, prefixes = _object_keys(warehouse, parameters, store.bucket)
        report.objects_deleted = _delete_objects(store, keys, prefixes)
        for table, columns in sorted(_tables(warehouse).items()):
            condition = _person_condition(columns, table)
            if condition is None:
                continue
            name = quote_identifier(table)
            count = warehouse.query_rows(f"SELECT count() AS n FROM {name} WHERE {condition}", parameters)[0]["n"]
            if count:
                # A synchronous mutation: when the command returns, the rows are gone from every part.
                warehouse.command(f"ALTER TABLE {name} DELETE WHERE {condition}", parameters, {"mutations_sync": 2})
            report.rows_deleted[table] = int(count)
        return report
    finally:
        if own_warehouse:
            warehouse.close()


def _open_for_writes(settings: WarehouseSettings) -> Warehouse:
    """Deleting needs write access, which the read-only query API does not give."""
    if settings.clickhouse.embedded:
        api_url = settings.api_url
        if api_is_up(api_url):
            raise ForgetError(
                f"`warehouse serve` at {api_url} owns the embedded warehouse at {settings.clickhouse.chdb_path}; "
                "stop it for the deletion, or point FS_CLICKHOUSE__URL at a ClickHouse server"
            )
    return open_warehouse(settings.clickhouse)
