"""Errors shared by every service; each carries the data a caller needs to act on it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class FunnelstreamError(Exception):
    """Root of every error this project raises on purpose."""


class ContractError(FunnelstreamError, ValueError):
    """An event or record does not follow the contract; ``errors`` names each field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class ConfigurationError(FunnelstreamError):
    """Settings that cannot work together, found before anything starts."""


class TransientError(FunnelstreamError):
    """Worth retrying: the dependency is away or overloaded, the request itself was fine."""

    def __init__(self, dependency: str, detail: str) -> None:
        self.dependency = dependency
        self.detail = detail
        super().__init__(f"{dependency}: {detail}")


class DeliveryError(FunnelstreamError):
    """The broker refused or failed to store a message that was handed to the producer."""

    def __init__(self, topic: str, reason: str, *, retriable: bool) -> None:
        self.topic = topic
        self.reason = reason
        self.retriable = retriable
        super().__init__(f"delivery to {topic} failed: {reason}")
