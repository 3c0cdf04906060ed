"""How every reader other than the warehouse process reaches the warehouse (docs/design.md, "Warehouse").

``connect()`` goes through the query API when ``warehouse serve`` answers, because in embedded
mode that process owns the chdb data path; otherwise it opens the warehouse itself.
``send_retrying`` is the one place a reader of the query API sends a request again: only for an
answer classified transient by ``retry_after_s``, after the wait the server asked for, a bounded
number of times within a bounded time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from clickhouse import queries
from clickhouse.backend import Warehouse, arrow_to_pandas, open_warehouse, parameter_text
from clickhouse.errors import QueryError, ReadOnlyViolation, WarehouseUnavailable
from clickhouse.settings import WarehouseSettings, read_key_headers
from funnelstream.errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("funnelstream.warehouse.client")
RETRY_ATTEMPTS = 5
"""Sends of one request at most, the first included."""
RETRY_BUDGET_S = 30.0
"""Time one request may take with its retries; a wait that would end past it is not started."""
MAX_RETRY_AFTER_S = 10.0
"""The longest wait taken from a Retry-After header; a longer one is cut to this."""
BUSY = "too_many_queries"
"""The ``error`` of the query API's 429 when every analyst session is busy (FS_SQL__MAX_CONCURRENT)."""


class WarehouseReader(Protocol):
    via_api: bool

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def query_df(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame: ...

    def named(self, name: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class ApiReader:
    """Read-only SQL and named queries through ``POST /v1/sql`` and ``POST /v1/queries/{name}``."""

    via_api = True

    def __init__(
        self, base_url: str, read_key: str, timeout_s: float = 120.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=read_key_headers(read_key), timeout=timeout_s, transport=transport
        )

    @classmethod
    def of(cls, settings: WarehouseSettings, base_url: str | None = None) -> ApiReader:
        """A reader of ``base_url`` (default: the configured API) with the configured read key."""
        return cls(base_url or settings.api_url, settings.warehouse.read_key.get_secret_value())

    @staticmethod
    def _wire(parameters: dict[str, Any] | None) -> dict[str, Any]:
        # ClickHouse's text form, so datetimes and arrays parse the same on either engine.
        return {name: parameter_text(value) for name, value in (parameters or {}).items()}

    def _post(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            response = send_retrying(lambda: self._http.post(path, json=body))
        except httpx.HTTPError as exc:
            raise WarehouseUnavailable(f"{self.base_url}: {exc}") from exc
        refuse_wrong_read_key(response)
        if response.status_code == 400 and response.json().get("error") == "read_only":
            detail = response.json()
            raise ReadOnlyViolation(detail.get("statement", "?"), detail.get("detail", ""))
        if response.status_code >= 500 or response.status_code == 429:
            raise WarehouseUnavailable(f"{self.base_url}{path}: {response.status_code} {response.text[:500]}")
        if response.status_code != 200:
            raise QueryError(response.text[:2000], sql=str(body.get("sql", path)))
        rows: list[dict[str, Any]] = response.json()["rows"]
        return rows

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._post("/v1/sql", {"sql": sql, "parameters": self._wire(parameters)})

    def query_df(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
        import pandas as pd  # noqa: PLC0415 -- heavy, and wanted only by the tooling that asks for a frame

        return pd.DataFrame(self.query_rows(sql, parameters))

    def named(self, name: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._post(f"/v1/queries/{name}", {"parameters": self._wire(parameters)})

    def close(self) -> None:
        self._http.close()


class DirectReader:
    """The warehouse opened in this process; only when no warehouse process owns it."""

    via_api = False

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.warehouse.query_rows(sql, parameters)

    def query_df(self, sql: str, parameters: dict[str, Any] | None = None) -> pd.DataFrame:
        return arrow_to_pandas(self.warehouse.query_arrow(sql, parameters))

    def named(self, name: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.warehouse.query_rows(queries.load(name), parameters)

    def close(self) -> None:
        self.warehouse.close()


def _error_of(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body.get("error")) if isinstance(body, dict) else None


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds to wait before sending the same request again, or None when it is not worth sending.

    Transient: a 429 because every analyst session is busy, and a 503 that says when to come back
    (Retry-After). Everything else is the request's own answer, the read-key throttle's 429 included
    (waiting does not make a wrong key right).
    """
    if response.status_code == 429:
        if _error_of(response) != BUSY:
            return None
    elif response.status_code != 503 or "retry-after" not in response.headers:
        return None
    try:
        wait = float(response.headers.get("retry-after", "1"))
    except ValueError:
        wait = 1.0  # an HTTP date or garbage: the API sends seconds, so wait the least it would ask
    if not math.isfinite(wait):
        wait = MAX_RETRY_AFTER_S
    return min(max(wait, 0.0), MAX_RETRY_AFTER_S)


def send_retrying(
    send: Callable[[], httpx.Response],
    *,
    attempts: int = RETRY_ATTEMPTS,
    budget_s: float = RETRY_BUDGET_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> httpx.Response:
    """``send()`` again while its answer is transient (``retry_after_s``), waiting as the server asks.

    At most ``attempts`` sends, and no wait that would end past ``budget_s`` from the first send.
    The last answer is returned as it is, a transient one included: the caller says what it means.
    Transport errors are not retried here; they propagate from ``send()``.
    """
    deadline = clock() + budget_s
    sent = 1
    response = send()
    while (wait := retry_after_s(response)) is not None and sent < attempts and clock() + wait <= deadline:
        log.info("query API busy; sending again", extra={"status": response.status_code, "retry_in_s": wait})
        sleep(wait)
        response = send()
        sent += 1
    return response


def refuse_wrong_read_key(response: Any) -> None:
    """A 401, or the read-key throttle's 429, is this reader's configuration, not the warehouse: say so.

    The 429 of a busy warehouse (every analyst session running) is not: it is transient."""
    if response.status_code == 401 or (response.status_code == 429 and _error_of(response) != BUSY):
        raise ConfigurationError(
            f"the warehouse API refused the read key (HTTP {response.status_code}: {response.text[:200]}); "
            "set FS_WAREHOUSE__READ_KEY to a key whose SHA-256 is in the server's FS_WAREHOUSE__READ_KEY_SHA256"
        )


def api_is_up(base_url: str, timeout_s: float = 1.0) -> bool:
    """Whether a ``warehouse serve`` answers there; ``/healthz`` is its one route without a key."""
    try:
        return httpx.get(f"{base_url.rstrip('/')}/healthz", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def connect(settings: WarehouseSettings | None = None, *, prefer_api: bool = True) -> WarehouseReader:
    """The API when ``warehouse serve`` is up, the warehouse itself otherwise."""
    settings = settings or WarehouseSettings()
    if prefer_api and api_is_up(settings.api_url):
        return ApiReader.of(settings)
    return DirectReader(open_warehouse(settings.clickhouse))
