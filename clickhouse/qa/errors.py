"""Errors of the QA and status tools; each carries what a caller needs to act on it."""

from __future__ import annotations

from funnelstream.errors import FunnelstreamError


class QAError(FunnelstreamError):
    """Root of the QA package's own errors."""


class UnknownCheck(QAError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"no QA check named {name!r}; known: {', '.join(known)}")


class InvalidWindow(QAError):
    """The --from/--to window cannot be evaluated."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class ResultsTableMissing(QAError):
    """``qa_results`` is not in the warehouse yet: the migrations have not been applied."""

    def __init__(self, database: str) -> None:
        self.database = database
        super().__init__(f"table {database}.qa_results does not exist; run `funnelstream db migrate` first")


class WarehouseNotShared(QAError):
    """An embedded warehouse is owned by ``warehouse serve``; only its API may read it meanwhile."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"the embedded warehouse at {path} is read through `warehouse serve` only, which did not answer"
        )


class HeartbeatRejected(QAError):
    """The collector did not accept a heartbeat; ``status`` and ``body`` are its answer."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"the collector answered {status} to a heartbeat: {body[:300]}")
