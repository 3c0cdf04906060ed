"""Errors of the experiments package; each carries the data a caller needs to act on it."""

from __future__ import annotations

from funnelstream.errors import FieldError, FunnelstreamError


class ExperimentError(FunnelstreamError):
    """Root of the experiments package's errors."""


class DefinitionError(ExperimentError, ValueError):
    """A definitions file, or a change to one, that cannot be applied; ``errors`` names each field."""

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(str(e) for e in errors))


class UnknownExperimentError(ExperimentError, LookupError):
    def __init__(self, key: str, known: list[str]) -> None:
        self.key = key
        self.known = known
        super().__init__(f"unknown experiment {key!r}; defined: {', '.join(known) or 'none'}")


class EventsFrameError(ExperimentError, ValueError):
    """The events handed to the analysis lack columns it needs."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(f"events frame lacks column(s): {', '.join(missing)}")


class WarehouseUnavailableError(ExperimentError):
    """Neither the warehouse API nor the embedded warehouse could run the experiment query."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"warehouse unavailable: {detail}")
