"""Errors of the stream processors; each carries what a caller needs to act on it."""

from __future__ import annotations

from funnelstream.errors import FieldError, FunnelstreamError


class StreamError(FunnelstreamError):
    """Root of the errors raised by the stream processors."""


class PoisonMessage(StreamError):
    """A record on the input topic that can never be processed; it goes to the dead-letter topic."""

    def __init__(self, reason: str, errors: list[FieldError] | None = None, event_id: str | None = None) -> None:
        self.reason = reason
        self.errors = errors or []
        self.event_id = event_id
        super().__init__(reason)


class DimensionFileError(StreamError):
    """A dimension file that cannot be published; ``errors`` names each bad entry and field."""

    def __init__(self, path: str, errors: list[FieldError]) -> None:
        self.path = path
        self.errors = errors
        super().__init__(f"{path}: " + "; ".join(str(e) for e in errors))
