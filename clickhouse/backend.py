"""One warehouse interface over two engines: chdb embedded and a ClickHouse server.

The SQL is the same both ways (server-side parameters ``{name:Type}``; results as Arrow, so types
match between engines). Invariant: nothing a client can reach runs on this session, which the
loader and ``/readyz`` keep: client statements run on an ``AnalystSession`` each engine opens, whose
settings carry every limit (``readonly=1``; only the project's own query files run with ``readonly=2``).
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlparse
from uuid import UUID

import orjson
import pyarrow as pa

from clickhouse.errors import QueryError, WarehouseUnavailable
from funnelstream.settings import ClickHouseConfig

if TYPE_CHECKING:
    import pandas as pd

Parameters = Mapping[str, Any] | None
Settings = Mapping[str, Any] | None

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
# Codes worth retrying: the server is starting, overloaded, or a replica is away.
TRANSIENT_ERROR_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY (replica lost its keeper session)
        252,  # TOO_MANY_PARTS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"identifier: {name!r} is not a plain ClickHouse identifier")
    return f"`{name}`"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _literal(value: Any) -> str:
    """A value inside a composite parameter (array, map), in ClickHouse's quoted text form."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ",".join(_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_literal(k)}:{_literal(v)}" for k, v in value.items()) + "}"
    return "'" + _escape(parameter_text(value)) + "'"


def parameter_text(value: Any) -> str:
    """A query parameter as the text ClickHouse parses for ``{name:Type}`` (the HTTP form)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        # Parameters are read in the server's time zone; the warehouse keeps UTC throughout.
        moment: datetime = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        return moment.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, date | UUID):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset | Mapping):
        return _literal(value)
    return str(value)


def _wire_text(value: Any) -> str:
    """A parameter as chdb takes it: ClickHouse reads a value in its escaped (TSV) text form, so a
    scalar's backslashes and line breaks are escaped; an array or map is already in quoted form."""
    text = parameter_text(value)
    if text == "\\N" or isinstance(value, list | tuple | set | frozenset | Mapping):
        return text
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _query_error(exc: Exception, sql: str) -> QueryError:
    message = str(exc)
    match = _ERROR_CODE.search(message)
    return QueryError(message, sql=sql, code=int(match.group(1)) if match else None)


@dataclass(frozen=True)
class AnalystLimits:
    """What one analyst statement may use; each becomes a setting of the session that runs it."""

    max_rows: int
    max_seconds: float
    max_memory_bytes: int
    max_result_bytes: int
    max_threads: int
    max_concurrent: int


def analyst_settings(
    limits: AnalystLimits, *, readonly: int = 1, result_limits: bool = True, whole: bool = False
) -> dict[str, Any]:
    """The session settings of analyst SQL, in the order they must be set: ``readonly`` last.

    ``readonly=1`` forbids changing any setting afterwards (SET or a SETTINGS clause), so the limits
    before it hold for every statement of the session. ``readonly=2`` is for the named queries, our
    own statements that set a setting of their own (``join_use_nulls``); they still cannot write.
    One more row than ``max_rows`` is fetched so that a cut answer says it was cut. ``whole`` is for
    the API's fixed routes, whose answers are never cut (a cut funnel or experiment would be wrong):
    one over ``max_result_bytes`` is an error instead.
    """
    settings: dict[str, Any] = {
        "max_execution_time": limits.max_seconds,
        "max_memory_usage": limits.max_memory_bytes,
        "max_threads": limits.max_threads,
        # Results in ClickHouse's own text forms: exact integers as JSON numbers, decimals as text,
        # times in ISO 8601 UTC, and any bytes that are not UTF-8 as U+FFFD in JSON.
        "output_format_json_quote_64bit_integers": 0,
        "output_format_json_quote_decimals": 1,
        "output_format_json_validate_utf8": 1,
        "output_format_json_escape_forward_slashes": 0,
        "date_time_output_format": "iso",
    }
    if whole:
        settings |= {"max_result_bytes": limits.max_result_bytes, "result_overflow_mode": "throw"}
    elif result_limits:
        settings |= {
            "limit": limits.max_rows + 1,
            "max_result_rows": limits.max_rows + 1,
            "max_result_bytes": limits.max_result_bytes,
            "result_overflow_mode": "break",
        }
    settings["readonly"] = readonly
    return settings


@runtime_checkable
class AnalystSession(Protocol):
    """A connection of its own for client-written SQL, limited by its settings."""

    def check(self, sql: str, parameters: Parameters = None) -> list[str]:
        """The first column of every row, on the checking session (read only, no result limits)."""
        ...

    def run(self, sql: str, parameters: Parameters, fmt: str) -> bytes:
        """The answer in ClickHouse's ``fmt``; a statement with a FORMAT of its own is a syntax error."""
        ...

    def arrow(self, sql: str, parameters: Parameters) -> pa.Table:
        """The answer as Arrow, typed as ``Warehouse.query_arrow`` gives it: for the API's own queries."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class AnalystEngine(Protocol):
    def analyst_session(
        self, limits: AnalystLimits, *, trusted: bool = False, whole: bool = False
    ) -> AnalystSession: ...


def _settings_clause(settings: Settings) -> str:
    if not settings:
        return ""
    parts = []
    for key, value in settings.items():
        if not _IDENTIFIER.match(key):
            raise ValueError(f"setting: {key!r} is not a setting name")
        parts.append(f"{key} = {_literal(value)}")
    return " SETTINGS " + ", ".join(parts)


def _with_settings(sql: str, settings: Settings) -> str:
    clause = _settings_clause(settings)
    if not clause:
        return sql
    return sql.rstrip().rstrip(";") + clause


@runtime_checkable
class WarehouseReads(Protocol):
    """The read half of a warehouse: what the named queries and the experiment analysis need."""

    def query_arrow(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> pa.Table: ...

    def query_rows(
        self, sql: str, parameters: Parameters = None, settings: Settings = None
    ) -> list[dict[str, Any]]: ...

    def query_df(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> pd.DataFrame: ...


@runtime_checkable
class Warehouse(WarehouseReads, Protocol):
    """What every reader and writer of the warehouse uses; nothing else touches an engine."""

    database: str
    embedded: bool

    def command(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> None: ...

    def insert_arrow(self, table: str, data: pa.Table, settings: Settings = None) -> int: ...

    def close(self) -> None: ...


class _ArrowResults:
    """Row and DataFrame views shared by both engines, built on ``query_arrow``."""

    def query_arrow(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> pa.Table:
        raise NotImplementedError

    def query_rows(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> list[dict[str, Any]]:
        return _plain_rows(self.query_arrow(sql, parameters, settings))

    def query_df(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> pd.DataFrame:
        return arrow_to_pandas(self.query_arrow(sql, parameters, settings))


def _plain_rows(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    map_columns = [field.name for field in table.schema if pa.types.is_map(field.type)]
    for row in rows:
        for name in map_columns:
            if row[name] is not None:
                row[name] = dict(row[name])
    return rows


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if isinstance(field.type, pa.ExtensionType) or pa.types.is_fixed_size_binary(field.type):
            # UUIDs become their canonical text; pandas has no UUID dtype.
            column = pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names).to_pandas()


class ChdbWarehouse(_ArrowResults):
    """chdb on a data path. chdb lets one process own a path; that process is the warehouse."""

    embedded = True

    def __init__(self, path: str, database: str) -> None:
        from chdb import session  # noqa: PLC0415 -- the engine is picked at run time; chdb is heavy to load

        quote_identifier(database)
        self.path = path
        self.database = database
        self._session: Any = session.Session(path)  # type: ignore[no-untyped-call]
        # One statement at a time. chdb runs one session's statements one after another anyway
        # (the USE below holds for the session), but after a failure the statement that drains what
        # it left must come before anyone else's. Analyst SQL runs on sessions of its own.
        self._lock = threading.RLock()
        self._run(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}", None, "CSV")
        self._run(f"USE {quote_identifier(database)}", None, "CSV")

    def _run(self, sql: str, parameters: Parameters, fmt: str) -> Any:
        with self._lock:
            if self._session is None:
                raise QueryError("the warehouse is closed", sql=sql)
            return _chdb_query(self._session, sql, parameters, fmt)

    def command(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> None:
        self._run(_with_settings(sql, settings), parameters, "CSV")

    def query_arrow(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> pa.Table:
        result = self._run(_with_settings(sql, settings), parameters, "ArrowTable")
        if isinstance(result, pa.Table):
            return result
        return pa.table({})

    def insert_arrow(self, table: str, data: pa.Table, settings: Settings = None) -> int:
        if data.num_rows == 0:
            return 0
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        columns = ", ".join(quote_identifier(name) for name in data.column_names)
        sql = f"INSERT INTO {quote_identifier(table)} ({columns}){_settings_clause(settings)}"
        with self._lock:
            if self._session is None:
                raise QueryError("the warehouse is closed", sql=sql)
            try:
                with self._session.send_insert(sql, "ArrowStream") as inserter:
                    inserter.append(sink.getvalue())
                    result = inserter.finish()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    self._session.query("SELECT 1", "CSV")  # what _chdb_query does after a failure
                raise _query_error(exc, sql) from None
        return int(getattr(result, "rows_written", data.num_rows))

    def analyst_session(self, limits: AnalystLimits, *, trusted: bool = False, whole: bool = False) -> AnalystSession:
        """Sessions of their own on this data path: they share the tables, not the lock or the settings."""
        return ChdbAnalystSession(self.path, self.database, limits, readonly=2 if trusted else 1, whole=whole)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


def _chdb_query(session: Any, sql: str, parameters: Parameters, fmt: str) -> Any:
    try:
        params = {name: _wire_text(value) for name, value in (parameters or {}).items()}
        return session.query(sql, fmt, params=params or None)
    except Exception as exc:  # chdb raises RuntimeError subclasses with ClickHouse's text
        # chdb keeps what a failed statement had written and prepends it to the next answer of the
        # session (a CSV header, Arrow bytes, rows); one statement whose answer is dropped takes it.
        with contextlib.suppress(Exception):
            session.query("SELECT 1", "CSV")
        raise _query_error(exc, sql) from None


class ChdbAnalystSession:
    """Two chdb sessions on the warehouse's path: one checks statements, one runs them.

    The checking session has no result limits, so a statement's whole syntax tree comes back; the
    running one has them all. chdb runs the statements of different sessions at the same time and
    those of one session one after another, so a pool of these bounds analyst concurrency.
    """

    def __init__(self, path: str, database: str, limits: AnalystLimits, *, readonly: int, whole: bool = False) -> None:
        from chdb import session  # noqa: PLC0415 -- the engine is picked at run time; chdb is heavy to load

        self._sessions: list[Any] = []
        for settings in (
            analyst_settings(limits, readonly=1, result_limits=False),
            analyst_settings(limits, readonly=readonly, whole=whole),
        ):
            opened = session.Session(path)  # type: ignore[no-untyped-call]
            self._sessions.append(opened)
            _chdb_query(opened, f"USE {quote_identifier(database)}", None, "CSV")
            for name, value in settings.items():
                _chdb_query(opened, f"SET {name} = {_literal(value)}", None, "CSV")
        self._check, self._run = self._sessions

    def check(self, sql: str, parameters: Parameters = None) -> list[str]:
        return _first_column(_chdb_query(self._check, sql, parameters, "JSONCompactEachRow").bytes())

    def run(self, sql: str, parameters: Parameters, fmt: str) -> bytes:
        result: bytes = _chdb_query(self._run, f"{sql} FORMAT {fmt}", parameters, fmt).bytes()
        return result

    def arrow(self, sql: str, parameters: Parameters) -> pa.Table:
        result = _chdb_query(self._run, sql, parameters, "ArrowTable")
        return result if isinstance(result, pa.Table) else pa.table({})

    def close(self) -> None:
        for opened in self._sessions:
            opened.close()
        self._sessions = []


def _first_column(answer: bytes) -> list[str]:
    return [str(orjson.loads(line)[0]) for line in answer.splitlines() if line]


class ServerWarehouse(_ArrowResults):
    """A ClickHouse server (or cluster entry point) through clickhouse-connect over HTTP."""

    embedded = False

    def __init__(self, url: str, database: str) -> None:
        # The engine is picked at run time: clickhouse-connect is loaded only when a server is used.
        import clickhouse_connect  # noqa: PLC0415
        from clickhouse_connect.driver.exceptions import OperationalError  # noqa: PLC0415

        parsed = urlparse(url)
        database = parsed.path.strip("/") or database
        quote_identifier(database)
        self.database = database
        self.url = url
        connect_args: dict[str, Any] = {
            "host": parsed.hostname or "localhost",
            "port": parsed.port or (8443 if parsed.scheme == "https" else 8123),
            "username": parsed.username or "default",
            "password": parsed.password or "",
            "secure": parsed.scheme == "https",
        }
        self._connect_args = connect_args
        try:
            bootstrap = clickhouse_connect.get_client(**connect_args)
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
            bootstrap.close()
            self._client: Any = clickhouse_connect.get_client(database=database, **connect_args)
        except OperationalError as exc:
            raise WarehouseUnavailable(f"{parsed.hostname}:{connect_args['port']}: {exc}") from exc

    def _translate(self, exc: Exception, sql: str) -> Exception:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError  # noqa: PLC0415 -- as in __init__

        if isinstance(exc, OperationalError):
            return WarehouseUnavailable(str(exc))
        if isinstance(exc, DatabaseError):
            match = _ERROR_CODE.search(str(exc))
            code = int(match.group(1)) if match else None
            if code in TRANSIENT_ERROR_CODES:
                return WarehouseUnavailable(str(exc))
            return QueryError(str(exc), sql=sql, code=code)
        return exc

    def command(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> None:
        try:
            self._client.command(sql, parameters=dict(parameters or {}), settings=dict(settings or {}))
        except Exception as exc:
            raise self._translate(exc, sql) from exc

    def query_arrow(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> pa.Table:
        try:
            return self._client.query_arrow(
                sql, parameters=dict(parameters or {}), settings=dict(settings or {}), use_strings=True
            )
        except Exception as exc:
            raise self._translate(exc, sql) from exc

    def insert_arrow(self, table: str, data: pa.Table, settings: Settings = None) -> int:
        if data.num_rows == 0:
            return 0
        try:
            summary = self._client.insert_arrow(table, data, database=self.database, settings=dict(settings or {}))
        except Exception as exc:
            raise self._translate(exc, f"INSERT INTO {table}") from exc
        return int(getattr(summary, "written_rows", data.num_rows) or data.num_rows)

    def analyst_session(self, limits: AnalystLimits, *, trusted: bool = False, whole: bool = False) -> AnalystSession:
        readonly = 2 if trusted else 1
        return ServerAnalystSession(self._connect_args, self.database, limits, readonly=readonly, whole=whole)

    def close(self) -> None:
        self._client.close()


class ServerAnalystSession:
    """A clickhouse-connect client of its own whose every request carries the analyst settings.

    No HTTP session id: the settings travel with each request, and a pool of these may run at once.
    A limit the server enforces is the analyst's error here, not a transient one.
    """

    def __init__(
        self,
        connect_args: Mapping[str, Any],
        database: str,
        limits: AnalystLimits,
        *,
        readonly: int,
        whole: bool = False,
    ) -> None:
        # The engine is picked at run time: clickhouse-connect is loaded only when a server is used.
        import clickhouse_connect  # noqa: PLC0415
        from clickhouse_connect.driver.exceptions import OperationalError  # noqa: PLC0415

        self._check_settings = analyst_settings(limits, readonly=1, result_limits=False)
        self._run_settings = analyst_settings(limits, readonly=readonly, whole=whole)
        try:
            self._client: Any = clickhouse_connect.get_client(
                database=database, autogenerate_session_id=False, **connect_args
            )
        except OperationalError as exc:
            raise WarehouseUnavailable(f"{connect_args.get('host')}: {exc}") from exc

    @contextlib.contextmanager
    def _translated(self, sql: str) -> Iterator[None]:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError  # noqa: PLC0415 -- as in __init__

        try:
            yield
        except OperationalError as exc:
            raise WarehouseUnavailable(str(exc)) from exc
        except DatabaseError as exc:
            raise _query_error(exc, sql) from None

    def _raw(self, sql: str, parameters: Parameters, settings: dict[str, Any], fmt: str) -> bytes:
        with self._translated(sql):
            answer: bytes = self._client.raw_query(sql, parameters=dict(parameters or {}), settings=settings, fmt=fmt)
        return answer

    def arrow(self, sql: str, parameters: Parameters) -> pa.Table:
        with self._translated(sql):
            table: pa.Table = self._client.query_arrow(
                sql, parameters=dict(parameters or {}), settings=self._run_settings, use_strings=True
            )
        return table

    def check(self, sql: str, parameters: Parameters = None) -> list[str]:
        return _first_column(self._raw(sql, parameters, self._check_settings, "JSONCompactEachRow"))

    def run(self, sql: str, parameters: Parameters, fmt: str) -> bytes:
        return self._raw(sql, parameters, self._run_settings, fmt)

    def close(self) -> None:
        self._client.close()


def open_warehouse(config: ClickHouseConfig) -> Warehouse:
    """The engine the configuration names: a server when ``url`` is set, chdb otherwise."""
    if config.url:
        return ServerWarehouse(config.url, config.database)
    config.chdb_path.parent.mkdir(parents=True, exist_ok=True)
    return ChdbWarehouse(str(config.chdb_path), config.database)
