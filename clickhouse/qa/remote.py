"""Read the warehouse through ``warehouse serve`` (POST /v1/sql), for when that process owns an
embedded warehouse: chdb lets one process own a data path, so every other reader asks it."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import httpx

from clickhouse.client import refuse_wrong_read_key, send_retrying
from clickhouse.errors import QueryError, WarehouseUnavailable
from clickhouse.settings import read_key_headers


def _json_parameter(value: Any) -> Any:
    if isinstance(value, datetime):
        # The text form ClickHouse parses for a DateTime64 parameter, in UTC like the warehouse.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, UUID | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    return value


class WarehouseApi:
    """The read half of the warehouse interface, over HTTP. Nothing can be written through it."""

    embedded = True

    def __init__(
        self, base_url: str, *, read_key: str, timeout_s: float = 60.0, client: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.database = "(warehouse API)"
        self._client = client or httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._headers = read_key_headers(read_key)

    def ready(self) -> bool:
        try:
            response = self._client.get("/readyz", headers=self._headers)
        except httpx.TransportError:
            return False
        refuse_wrong_read_key(response)
        return response.status_code == 200

    def query_rows(
        self, sql: str, parameters: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        body = {"sql": sql, "parameters": {k: _json_parameter(v) for k, v in (parameters or {}).items()}}
        try:
            response = send_retrying(lambda: self._client.post("/v1/sql", json=body, headers=self._headers))
        except httpx.TransportError as exc:
            raise WarehouseUnavailable(f"{self.base_url}: {exc}") from exc
        refuse_wrong_read_key(response)
        # Still busy (429) or away after the retries: transient, not the query's fault.
        if response.status_code in (429, 502, 503, 504):
            raise WarehouseUnavailable(f"{self.base_url}: HTTP {response.status_code} {response.text[:300]}")
        if response.status_code != 200:
            detail = response.text[:2000]
            with contextlib.suppress(ValueError):
                detail = str(response.json().get("detail", detail))
            raise QueryError(f"HTTP {response.status_code}: {detail}", sql=sql)
        rows: list[dict[str, Any]] = response.json()["rows"]
        return rows

    def close(self) -> None:
        self._client.close()
