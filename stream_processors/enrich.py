"""Turn an event into one ``events.enriched`` row (:class:`EnrichedEvent`).

An event comes in the form the collector writes it (a dict of JSON values; optional fields may
be absent), the row goes out as a plain dict serialized with orjson: validating a pydantic model
per output row would cost as much as the rest of the pipeline. The unit tests validate every
kind of row against :class:`EnrichedEvent`, so the dict cannot drift from the contract unnoticed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import ua_parser

from funnelstream.contract import EVENT_ADAPTER, FUNNEL_STEP_OF, Envelope
from stream_processors.dimensions import DimensionStore, DimensionValue

_CONTEXT_FIELDS = (
    "page_url",
    "referrer",
    "user_agent",
    "locale",
    "app_version",
    "library_name",
    "library_version",
    "ip",
)
_BOT_FAMILIES = frozenset({"Spider"})
STEP_OF: dict[str, int] = {str(kind): int(step) for kind, step in FUNNEL_STEP_OF.items()}
"""Funnel step of an event type, by its name."""
_TOOL_COLUMNS = ("tool_id", "tool_name", "tool_type")
_INFERENCE_COLUMNS = ("inference_id", "inference_name", "inference_type")


def _copy_dimension(
    row: dict[str, Any], dimension_id: int | None, table: dict[int, DimensionValue], columns: tuple[str, str, str]
) -> bool:
    """Copy a dimension's id, name and type into the row; True when the id is set but unknown."""
    if dimension_id is None:
        return False
    id_column, name_column, type_column = columns
    row[id_column] = dimension_id
    value = table.get(dimension_id)
    if value is None:
        return True
    row[name_column] = value.name
    row[type_column] = value.type
    return False


@dataclass(frozen=True, slots=True)
class UserAgentInfo:
    browser: str | None
    os: str | None
    device: str | None
    is_bot: bool


class UserAgentParser:
    """ua-parser with an LRU cache in front: a site sees few distinct user agents, many times."""

    def __init__(self, cache_size: int = 10_000) -> None:
        self._parse = functools.lru_cache(maxsize=cache_size)(self._parse_uncached)

    @staticmethod
    def _parse_uncached(user_agent: str) -> UserAgentInfo:
        result = ua_parser.parse(user_agent)
        browser = result.user_agent.family if result.user_agent else None
        os_family = result.os.family if result.os else None
        device = result.device.family if result.device else None
        is_bot = device in _BOT_FAMILIES or (browser is not None and "bot" in browser.lower())
        return UserAgentInfo(browser=browser, os=os_family, device=device, is_bot=is_bot)

    def parse(self, user_agent: str | None) -> UserAgentInfo | None:
        if not user_agent:
            return None
        return self._parse(user_agent)


@dataclass
class EnrichmentCounters:
    unknown_tool: int = 0
    unknown_inference: int = 0


class Enricher:
    def __init__(self, dimensions: DimensionStore, user_agents: UserAgentParser) -> None:
        self.dimensions = dimensions
        self.user_agents = user_agents
        self.counters = EnrichmentCounters()

    def enrich(
        self,
        event: Envelope | dict[str, Any],
        *,
        session_id: str,
        is_late: bool,
        enriched_at: datetime,
        event_ts: datetime | None = None,
        received_at: datetime | None = None,
    ) -> dict[str, Any]:
        """The row of an event (a contract model or its JSON form) in a session."""
        fields = event if isinstance(event, dict) else EVENT_ADAPTER.dump_python(event, mode="json")  # type: ignore[arg-type]
        row = self.row(fields, is_late=is_late, enriched_at=enriched_at)
        row["session_id"] = session_id
        if event_ts is not None:
            row["event_ts"] = event_ts
        if received_at is not None:
            row["received_at"] = received_at
        return row

    def row(self, event: dict[str, Any], *, is_late: bool, enriched_at: datetime | orjson.Fragment) -> dict[str, Any]:
        """The row of an event in the collector's form, all but its session id. Raises on values
        of the wrong type (a forged document); the caller dead-letters the event.

        Every field of the contract but ``context`` (flattened) and the heartbeat's
        ``emitted_by`` is a column of the same name, so the row starts as a copy of the event;
        optional fields keep their nulls, which the row's model reads as absent."""
        row = event.copy()
        context = row.pop("context", None)
        row.pop("emitted_by", None)
        if row.get("timestamp_flag") is None:
            row["timestamp_flag"] = "ok"
        if row.get("source") is None:
            row["source"] = ""
        if row.get("experiments") is None:
            row["experiments"] = {}
        if row.get("properties") is None:
            row["properties"] = {}
        row["is_late"] = is_late
        row["funnel_step"] = STEP_OF.get(row["event_type"], 0)
        row["enriched_at"] = enriched_at
        dimensions = self.dimensions
        unknown_tool = _copy_dimension(row, row.get("tool_id"), dimensions.tools, _TOOL_COLUMNS)
        unknown_inference = _copy_dimension(row, row.get("inference_id"), dimensions.inferences, _INFERENCE_COLUMNS)
        counters = self.counters
        counters.unknown_tool += unknown_tool
        counters.unknown_inference += unknown_inference
        row["unknown_dimension"] = unknown_tool or unknown_inference
        if context:
            context_get = context.get
            for name in _CONTEXT_FIELDS:
                value = context_get(name)
                if value is not None:
                    row[name] = value
            info = self.user_agents.parse(context_get("user_agent"))
            if info is not None:
                row["browser"] = info.browser
                row["os"] = info.os
                row["device"] = info.device
                row["is_bot"] = info.is_bot
        return row
