"""What flows between the loader's steps: a consumed Kafka message and a refused one."""

from __future__ import annotations

from dataclasses import dataclass

from funnelstream.errors import FieldError


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    produced_at_ms: int | None = None
    """The broker timestamp (producer's create time), when the broker gave one."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that does not fit its model: it goes to the dead letters, its neighbours load."""

    message: Message
    reason: str
    errors: list[FieldError]
    event_id: str | None = None
