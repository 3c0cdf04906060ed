"""Turn a validated event into one ``events.enriched`` row (:class:`EnrichedEvent`).

The row is built as a plain dict and serialized with orjson: validating a pydantic model per
output row would cost as much as the rest of the pipeline. The unit tests validate every kind of
row against :class:`EnrichedEvent`, so the dict cannot drift from the contract unnoticed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ua_parser

from funnelstream.contract import FUNNEL_STEP_OF, Envelope, TimestampFlag
from stream_processors.dimensions import DimensionStore, DimensionValue

# Fields that exist on some event types and have a column of the same name in EnrichedEvent.
_EVENT_FIELDS = (
    "job_id",
    "input_url",
    "mask_url",
    "inference_url",
    "width",
    "height",
    "size_bytes",
    "content_type",
    "proposal_count",
    "status",
    "latency_ms",
    "model_name",
    "model_version",
    "error",
    "score",
    "experiment_key",
    "variant",
)
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
        event: Envelope,
        *,
        event_ts: datetime,
        received_at: datetime,
        session_id: str,
        is_late: bool,
        enriched_at: datetime,
    ) -> dict[str, Any]:
        attrs = event.__dict__
        event_type = attrs["event_type"]
        row: dict[str, Any] = {
            "event_id": attrs["event_id"],
            "event_type": event_type,
            "schema_version": attrs["schema_version"],
            "anonymous_id": attrs["anonymous_id"],
            "user_id": attrs["user_id"],
            "input_id": attrs["input_id"],
            "session_id": session_id,
            "client_ts": attrs["client_ts"],
            "sent_at": attrs["sent_at"],
            "received_at": received_at,
            "event_ts": event_ts,
            "timestamp_flag": attrs["timestamp_flag"] or TimestampFlag.OK,
            "is_late": is_late,
            "source": attrs["source"] or "",
            "funnel_step": int(FUNNEL_STEP_OF.get(event_type, 0)),
            "experiments": attrs["experiments"],
            "properties": attrs["properties"],
            "enriched_at": enriched_at,
        }
        for name in _EVENT_FIELDS:
            value = attrs.get(name)
            if value is not None:
                row[name] = value
        unknown_tool = _copy_dimension(row, attrs.get("tool_id"), self.dimensions.tools, _TOOL_COLUMNS)
        unknown_inference = _copy_dimension(
            row, attrs.get("inference_id"), self.dimensions.inferences, _INFERENCE_COLUMNS
        )
        self.counters.unknown_tool += unknown_tool
        self.counters.unknown_inference += unknown_inference
        row["unknown_dimension"] = unknown_tool or unknown_inference
        context = attrs["context"].__dict__
        for name in _CONTEXT_FIELDS:
            value = context.get(name)
            if value is not None:
                row[name] = value
        info = self.user_agents.parse(context.get("user_agent"))
        if info is not None:
            row["browser"] = info.browser
            row["os"] = info.os
            row["device"] = info.device
            row["is_bot"] = info.is_bot
        return row
