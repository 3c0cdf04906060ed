"""Errors of the warehouse; each carries what a caller needs to act on it."""

from __future__ import annotations

from funnelstream.errors import FunnelstreamError, TransientError


class WarehouseError(FunnelstreamError):
    """Root of the warehouse's own errors."""


class QueryError(WarehouseError):
    """ClickHouse refused a statement; ``code`` is ClickHouse's error code when it gave one."""

    def __init__(self, message: str, *, sql: str, code: int | None = None) -> None:
        self.message = message
        self.sql = sql
        self.code = code
        super().__init__(message)


class WarehouseUnavailable(TransientError):
    """The ClickHouse server (or the warehouse API) cannot be reached right now."""

    def __init__(self, detail: str) -> None:
        super().__init__("clickhouse", detail)


class ReadOnlyViolation(WarehouseError):
    """A statement sent to the read-only SQL endpoint would write, change schema or settings."""

    def __init__(self, statement_kind: str, detail: str) -> None:
        self.statement_kind = statement_kind
        self.detail = detail
        super().__init__(f"only read-only SELECT statements are allowed; refused {statement_kind}: {detail}")


class MigrationError(WarehouseError):
    """A migration file failed; ``version`` and ``statement`` say which."""

    def __init__(self, version: int, name: str, statement: str, reason: str) -> None:
        self.version = version
        self.name = name
        self.statement = statement
        self.reason = reason
        super().__init__(f"migration {version:04d}_{name} failed: {reason}")


class UnknownQuery(WarehouseError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"no named query {name!r}; known: {', '.join(known)}")


class LoaderError(WarehouseError):
    """The loader cannot go on (e.g. a fatal Kafka error); its current batch stays uncommitted."""


class LimitExceeded(WarehouseError):
    """An analyst statement ran past one of its limits (time, memory, result size); a 400 naming it."""

    def __init__(self, limit: str, setting: str, detail: str) -> None:
        self.limit = limit
        self.setting = setting
        self.detail = detail
        super().__init__(f"the query went past its {limit} limit ({setting}): {detail}")


class AnalystBusy(WarehouseError):
    """Every analyst session is running a statement; a 429 with ``Retry-After``."""

    def __init__(self, running: int, retry_after_s: int = 1) -> None:
        self.running = running
        self.retry_after_s = retry_after_s
        super().__init__(
            f"{running} analyst queries are running, the most at once (FS_SQL__MAX_CONCURRENT); try again shortly"
        )
