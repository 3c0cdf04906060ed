"""Every query a client can reach (analyst SQL, named queries, the API's fixed routes through
``AnalystReader``), run on analyst sessions of their own.

Owns the pool of analyst sessions (its size is the concurrency limit: over it, 429 at once), the
translation of ClickHouse's limit errors into errors naming the setting, and the answer's shape
(ClickHouse's JSONEachRow or CSVWithNames, cut at ``max_rows``). Invariant: client SQL runs only as
``sqlguard`` rendered it, on a session carrying every limit; nothing here touches the loader's session.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from clickhouse.backend import (
    AnalystEngine,
    AnalystLimits,
    AnalystSession,
    Parameters,
    Settings,
    _ArrowResults,
    _with_settings,
)
from clickhouse.errors import AnalystBusy, LimitExceeded, QueryError, ReadOnlyViolation, WarehouseError
from clickhouse.sqlguard import canonical, check_read_only

Output = Literal["json", "csv"]
_FORMATS: dict[str, str] = {"json": "JSONEachRow", "csv": "CSVWithNames"}
# One CSV row as ClickHouse writes it: quoted fields (quotes doubled, newlines kept) or bare ones.
_CSV_ROW = re.compile(rb'(?:"(?:[^"]++|"")*+"|[^"\n]++)*+\n')
_TIMEOUT_CODES = frozenset({159, 160})  # TIMEOUT_EXCEEDED, TOO_SLOW
_MEMORY_CODE = 241
_RESULT_CODE = 396  # TOO_MANY_ROWS_OR_BYTES
_READONLY_CODE = 164
_TOO_MANY_CODE = 202


@dataclass(frozen=True)
class AnalystResult:
    """``body``: a JSON array of row objects, or CSV with a header line; both UTF-8."""

    body: bytes
    rows: int
    truncated: bool


class AnalystPool:
    """At most ``max_concurrent`` analyst statements at once, each on a session nobody else uses."""

    def __init__(self, engine: AnalystEngine, limits: AnalystLimits) -> None:
        self.engine = engine
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_concurrent)
        # Idle sessions by kind: (trusted, whole), as ``AnalystEngine.analyst_session`` takes them.
        self._idle: dict[tuple[bool, bool], list[AnalystSession]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def session(self, *, trusted: bool = False, whole: bool = False) -> Iterator[AnalystSession]:
        # Refused at once rather than queued: a queue would hold a server thread per waiting client.
        if not self._slots.acquire(blocking=False):
            raise AnalystBusy(self.limits.max_concurrent)
        try:
            with self._lock:
                if self._closed:
                    raise WarehouseError("the warehouse is shutting down")
                idle = self._idle.setdefault((trusted, whole), [])
                session = idle.pop() if idle else None
            if session is None:
                session = self.engine.analyst_session(self.limits, trusted=trusted, whole=whole)
            failed = True
            try:
                yield session
                failed = False
            finally:
                # A session a statement failed on is not lent again: whatever the engine kept of that
                # statement must not reach the next client (a new session costs milliseconds).
                with self._lock:
                    keep = not self._closed and not failed
                    if keep:
                        self._idle[trusted, whole].append(session)
                if not keep:
                    session.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sessions = [session for idle in self._idle.values() for session in idle]
            self._idle = {}
        for session in sessions:
            session.close()

    def sql(self, sql: str, parameters: Parameters, output: Output) -> AnalystResult:
        """A client's statement: checked by the parser, then its rendering run with every limit."""
        with self.session() as session:
            try:
                statement = check_read_only(sql, session, parameters)
                return self._answer(session, statement, parameters, output)
            except QueryError as exc:
                raise self._named(exc) from None

    def named(self, sql: str, parameters: Parameters) -> AnalystResult:
        """One of our named queries: the same limits, on a session that lets it set its own settings."""
        with self.session(trusted=True) as session:
            try:
                return self._answer(session, canonical(session, sql), parameters, "json")
            except QueryError as exc:
                raise self._named(exc) from None

    def arrow(self, sql: str, parameters: Parameters) -> pa.Table:
        """One of the API's own statements (a fixed route's): the same limits, and a whole answer or an
        error naming the limit it went past; never a cut one."""
        with self.session(trusted=True, whole=True) as session:
            try:
                return session.arrow(sql, parameters)
            except QueryError as exc:
                raise self._named(exc) from None

    def _answer(self, session: AnalystSession, statement: str, parameters: Parameters, output: Output) -> AnalystResult:
        raw = session.run(statement, parameters, _FORMATS[output])
        return shape(raw, output, self.limits.max_rows)

    def _named(self, exc: QueryError) -> WarehouseError:
        """ClickHouse's refusal as the error that names the limit (and its setting) that refused."""
        limits = self.limits
        said = exc.message[:500]
        if exc.code in _TIMEOUT_CODES:
            return LimitExceeded("time", "FS_SQL__MAX_SECONDS", f"at most {limits.max_seconds:g} s; {said}")
        if exc.code == _MEMORY_CODE:
            return LimitExceeded(
                "memory", "FS_SQL__MAX_MEMORY_BYTES", f"at most {limits.max_memory_bytes} bytes; {said}"
            )
        if exc.code == _RESULT_CODE:
            return LimitExceeded(
                "result", "FS_SQL__MAX_RESULT_BYTES", f"at most {limits.max_result_bytes} bytes; {said}"
            )
        if exc.code == _READONLY_CODE:
            return ReadOnlyViolation("READONLY", said)
        if exc.code == _TOO_MANY_CODE:
            return AnalystBusy(limits.max_concurrent)
        return exc


class AnalystReader(_ArrowResults):
    """The read half of ``Warehouse`` over the pool, for the fixed routes and experiment results.

    Each statement takes a pool session for itself: it waits for neither the loader nor /readyz,
    counts against FS_SQL__MAX_CONCURRENT (one more is ``AnalystBusy``, a 429) and carries every limit.
    """

    def __init__(self, pool: AnalystPool) -> None:
        self.pool = pool

    def query_arrow(self, sql: str, parameters: Parameters = None, settings: Settings = None) -> pa.Table:
        return self.pool.arrow(_with_settings(sql, settings), parameters)


def shape(raw: bytes, output: Output, max_rows: int) -> AnalystResult:
    """ClickHouse's answer cut at ``max_rows`` rows; the session fetched one more to tell a cut."""
    body = _utf8(raw)
    if output == "csv":
        return _cut_csv(body, max_rows)
    # JSONEachRow escapes every newline inside a value, so one line is one row.
    lines = [line for line in body.split(b"\n") if line]
    kept = lines[:max_rows]
    return AnalystResult(b"[" + b",".join(kept) + b"]", len(kept), len(lines) > max_rows)


def _cut_csv(body: bytes, max_rows: int) -> AnalystResult:
    position, rows = 0, -1  # the first line is the header
    while position < len(body):
        row = _CSV_ROW.match(body, position)
        if row is None:
            break
        if rows == max_rows:
            return AnalystResult(body[:position], rows, True)
        position, rows = row.end(), rows + 1
    return AnalystResult(body, max(rows, 0), False)


def _utf8(raw: bytes) -> bytes:
    """Bytes that are not UTF-8 (a binary String) become U+FFFD; ask for hex() or base64Encode() to keep them."""
    try:
        raw.decode()
    except UnicodeDecodeError:
        return raw.decode(errors="replace").encode()
    return raw
