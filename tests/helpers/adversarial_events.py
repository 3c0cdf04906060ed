"""Hypothesis strategies for small clickstreams built to sit on every edge of the analytics
definitions (docs/analytics-definitions.md), and their loading into a warehouse.

A generated :class:`Dataset` has steps at the same millisecond, chains that end exactly at the
window or one millisecond past it, step-1 events on both sides of ``from`` and ``to``, later steps
after ``to`` inside and outside the window, re-entries, events without an image, excluded steps,
resends of an event with another ``event_ts``, ``sent_at`` and ``received_at`` (the first received
may be inserted last), late arrivals, task times on both sides of the cap, and devices exposed to
both arms (by exposure, by the ``experiments`` map, by a shared ``user_id``), some by forced
assignment.

Invariant: every copy of an event shares ``event_id``, ``client_ts`` and every field but
``sent_at``, ``received_at``, ``event_ts``, ``enriched_at`` and ``is_late``; copies of one event
lie in different insert batches, so only the query's or the merge's collapse can pick one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from clickhouse.backend import Warehouse
from clickhouse.loader import Message, decode_events
from funnelstream.contract import FUNNEL_STEP_OF, EnrichedEvent, EventType

WINDOW_S = 60
WINDOW_MS = WINDOW_S * 1000
TASK_TIME_CAP_MS = 3_600_000
# The range crosses a UTC midnight, so a day breakdown and the daily trend see two days.
FROM = datetime(2026, 11, 20, 23, 57, tzinfo=UTC)
TO = datetime(2026, 11, 21, 0, 3, tzinfo=UTC)
EXPERIMENT = "segmentation_tool"
OTHER_EXPERIMENT = "pricing_page"
VARIANTS = ("control", "treatment")

_RANGE_MS = int((TO - FROM).total_seconds() * 1000)
_MIDNIGHT_MS = int((datetime(2026, 11, 21, tzinfo=UTC) - FROM).total_seconds() * 1000)
# Where a journey or an exposure starts, in ms from FROM: on and next to every boundary.
ANCHORS_MS = (
    -TASK_TIME_CAP_MS,
    -WINDOW_MS - 1,
    -1,
    0,
    1,
    _MIDNIGHT_MS - 1,
    _MIDNIGHT_MS,
    _RANGE_MS - WINDOW_MS,
    _RANGE_MS - 1,
    _RANGE_MS,
    _RANGE_MS + 1,
)
# Gaps between the events of a journey: ties, one millisecond, half a window (two make exactly a
# window), a window and one past it, the task-time cap and one past it.
GAPS_MS = (0, 0, 0, 1, 999, WINDOW_MS // 2, WINDOW_MS // 2, WINDOW_MS, WINDOW_MS + 1, TASK_TIME_CAP_MS, 1)
# How a resend's event_ts differs from the original's: it may cross from, to or the window.
RESEND_SHIFTS_MS = (0, 1, -1, WINDOW_MS, -WINDOW_MS, 3 * WINDOW_MS, -_RANGE_MS)
RECEIVE_LAGS_MS = (0, 20, 20, 400, 3_600_000)
JOURNEY_TYPES = (
    EventType.IMAGE_UPLOADED,
    EventType.TOOL_SELECTED,
    EventType.INFERENCE_REQUESTED,
    EventType.IMAGE_SAVED,
    EventType.SCORE_SUBMITTED,
    EventType.INFERENCE_COMPLETED,
    EventType.SEGMENTS_PROPOSED,
)
TOOLS = ("brush", "rectangle", "segmentation")
INFERENCE_TYPES = ("deblurring", "inpainting")
SOURCES = ("web", "ios", "")
BROWSERS = (None, "Chrome", "Firefox")
OPERATING_SYSTEMS = (None, "Linux", "iOS")
DEVICE_TYPES = (None, "Other", "iPhone")
# Upload sides on the size buckets' bounds: just under 1 MP, exactly 1 MP, just under and exactly 4 MP.
IMAGE_SIDES = ((999, 1000), (1000, 1000), (1999, 2000), (2000, 2000))
SHARED_USER = "u-shared"


@dataclass(frozen=True, slots=True)
class Dataset:
    batches: list[list[EnrichedEvent]]
    """What the loader receives, insert by insert."""

    @property
    def events(self) -> list[EnrichedEvent]:
        """Every delivered copy, duplicates included."""
        return [event for batch in self.batches for event in batch]


@dataclass(slots=True)
class _Builder:
    events: list[tuple[EnrichedEvent, list[EnrichedEvent]]] = field(default_factory=list)

    def next_id(self) -> uuid.UUID:
        return uuid.UUID(int=len(self.events) + 1)


def _at(offset_ms: int) -> datetime:
    return FROM + timedelta(milliseconds=offset_ms)


def input_id_of(image: int) -> uuid.UUID:
    return uuid.UUID(int=(1 << 64) + image)


def _type_fields(kind: EventType, draw: st.DrawFn) -> dict[str, Any]:
    if kind == EventType.TOOL_SELECTED:
        return {"tool_id": 1, "tool_name": draw(st.sampled_from(TOOLS)), "tool_type": "manual"}
    if kind in (EventType.INFERENCE_REQUESTED, EventType.INFERENCE_COMPLETED):
        return {"inference_id": 1, "inference_name": "x", "inference_type": draw(st.sampled_from(INFERENCE_TYPES))}
    if kind == EventType.SCORE_SUBMITTED:
        return {"score": draw(st.integers(1, 5))}
    return {}


def _client_fields(draw: st.DrawFn, event: EnrichedEvent) -> dict[str, Any]:
    """Browser, OS and device type (each possibly missing), and an upload's sides."""
    fields: dict[str, Any] = {
        "browser": draw(st.sampled_from(BROWSERS)),
        "os": draw(st.sampled_from(OPERATING_SYSTEMS)),
        "device": draw(st.sampled_from(DEVICE_TYPES)),
    }
    if event.event_type == EventType.IMAGE_UPLOADED:
        fields["width"], fields["height"] = draw(st.sampled_from(IMAGE_SIDES))
    return fields


def _experiment_maps(arm: str) -> tuple[dict[str, str], ...]:
    """Mostly no map or the device's own arm; now and then the other arm or another experiment."""
    other = VARIANTS[1 - VARIANTS.index(arm)]
    return (
        {},
        {},
        {},
        {EXPERIMENT: arm},
        {EXPERIMENT: arm},
        {OTHER_EXPERIMENT: other},
        *([{}] * 6),
        {EXPERIMENT: other},
    )


def _delivered(
    draw: st.DrawFn, builder: _Builder, kind: EventType, device: int, arm: str, at_ms: int, **fields: Any
) -> None:
    """One event and its resends: the copies keep the event but not its times."""
    event_id = builder.next_id()
    lag = draw(st.sampled_from(RECEIVE_LAGS_MS))
    received = at_ms + lag
    base: dict[str, Any] = {
        "event_id": event_id,
        "event_type": kind,
        "schema_version": 1,
        "anonymous_id": f"d{device}",
        "session_id": f"d{device}:s{draw(st.integers(0, 1))}",
        "client_ts": _at(at_ms),
        "funnel_step": int(FUNNEL_STEP_OF.get(kind, 0)),
        # Mostly the device's own user; sometimes a user another device has too.
        "user_id": draw(st.sampled_from((None, None, f"u{device}", f"u{device}", SHARED_USER))),
        "source": draw(st.sampled_from(SOURCES)),
        "experiments": draw(st.sampled_from(_experiment_maps(arm))),
        **fields,
    }

    def copy(event_ms: int, received_ms: int, enrich_lag_ms: int) -> EnrichedEvent:
        return EnrichedEvent(
            **base,
            event_ts=_at(event_ms),
            received_at=_at(received_ms),
            sent_at=_at(received_ms - 10),
            enriched_at=_at(received_ms + enrich_lag_ms),
            is_late=received_ms - event_ms > 600_000,
        )

    original = copy(at_ms, received, draw(st.sampled_from((5, 2_000))))
    resends = []
    # One resend at most: each copy costs an insert, and two copies already decide the rule.
    for _ in range(draw(st.integers(0, 1))):
        shift = draw(st.sampled_from(RESEND_SHIFTS_MS))
        # A resend may have been received before the copy delivered first, or at the same time.
        received_shift = draw(st.sampled_from((-1_000, 0, 1_000, 5_000)))
        resends.append(copy(at_ms + shift, received + received_shift, draw(st.sampled_from((5, 2_000)))))
    builder.events.append((original, resends))


@st.composite
def _journeys_in_order(draw: st.DrawFn) -> list[EventType]:
    """The five funnel steps in order, some left out, repeated or with another event between."""
    kinds: list[EventType] = []
    for step in JOURNEY_TYPES[:5]:
        if draw(st.integers(0, 5)) == 0:
            kinds.append(draw(st.sampled_from(JOURNEY_TYPES)))
        kinds.extend([step] * draw(st.sampled_from((1, 1, 1, 1, 0, 2))))
    return kinds


@st.composite
def datasets(draw: st.DrawFn, max_images: int = 6, max_devices: int = 3) -> Dataset:
    """A small adversarial clickstream around FROM..TO with WINDOW_S."""
    builder = _Builder()
    devices = draw(st.integers(1, max_devices))
    arms = [draw(st.sampled_from(VARIANTS)) for _ in range(devices)]
    for device in range(devices):
        other = VARIANTS[1 - VARIANTS.index(arms[device])]
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from((EXPERIMENT, EXPERIMENT, OTHER_EXPERIMENT)))
            variant = draw(st.sampled_from((arms[device], arms[device], arms[device], other)))
            source = draw(st.sampled_from(("hash", "hash", "forced", None)))
            _delivered(
                draw,
                builder,
                EventType.EXPERIMENT_EXPOSURE,
                device,
                arms[device],
                draw(st.sampled_from(ANCHORS_MS)) + draw(st.sampled_from((0, 0, 1, 30_000))),
                experiment_key=key,
                variant=variant,
                properties={} if source is None else {"assignment_source": source},
            )
    for image in range(draw(st.integers(1, max_images))):
        device = draw(st.integers(0, devices - 1))
        at = draw(st.sampled_from(ANCHORS_MS))
        for kind in draw(
            st.one_of(_journeys_in_order(), st.lists(st.sampled_from(JOURNEY_TYPES), min_size=1, max_size=7))
        ):
            at += draw(st.sampled_from(GAPS_MS))
            # A few events lose their image: a device or session funnel still sees them.
            input_id = input_id_of(image) if draw(st.integers(0, 9)) else None
            _delivered(draw, builder, kind, device, arms[device], at, input_id=input_id, **_type_fields(kind, draw))
    batch_count = 1 + max(len(resends) for _, resends in builder.events)
    batch_count = max(batch_count, draw(st.integers(1, 2)))
    batches: list[list[EnrichedEvent]] = [[] for _ in range(batch_count)]
    for original, resends in builder.events:
        first = draw(st.integers(0, batch_count - 1))
        for offset, event in enumerate([original, *resends]):
            batches[(first + offset) % batch_count].append(event)
    # Drawn last, so the draws above (and the datasets a derandomized search finds) stay as they were.
    client = {original.event_id: _client_fields(draw, original) for original, _ in builder.events}
    return Dataset(
        batches=[[event.model_copy(update=client[event.event_id]) for event in batch] for batch in batches if batch]
    )


def load(warehouse: Warehouse, dataset: Dataset) -> None:
    """Each batch in its own insert, in order, as the loader would."""
    for batch in dataset.batches:
        messages = [Message("events.enriched", 0, i, None, e.model_dump_json().encode()) for i, e in enumerate(batch)]
        table, rejected = decode_events(messages)
        assert not rejected, rejected
        warehouse.insert_arrow("events", table)


def truncate_all(warehouse: Warehouse) -> None:
    """Empty every table of the database (events and what its materialized views fill)."""
    tables = warehouse.query_rows(
        "SELECT name FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree%' AND total_rows > 0",
        {"db": warehouse.database},
    )
    for row in tables:
        warehouse.command(f"TRUNCATE TABLE {warehouse.database}.`{row['name']}`")


def describe(dataset: Dataset) -> str:
    """The dataset as a short Python list, one copy per line, for a mismatch report."""

    def ms(value: datetime | None) -> str:
        return "None" if value is None else str(int((value - FROM).total_seconds() * 1000))

    lines = ["# times in ms from FROM = " + FROM.isoformat() + f"; TO = FROM + {_RANGE_MS}; window {WINDOW_S} s", "["]
    for number, batch in enumerate(dataset.batches):
        lines.append(f"  # insert {number}")
        for event in batch:
            extra = {
                key: value
                for key, value in {
                    "tool": event.tool_name,
                    "inference_type": event.inference_type,
                    "key": event.experiment_key,
                    "variant": event.variant,
                    "user": event.user_id,
                    "source": event.source or None,
                    "experiments": event.experiments or None,
                    "properties": event.properties or None,
                }.items()
                if value is not None
            }
            image = None if event.input_id is None else event.input_id.int - (1 << 64)
            lines.append(
                f"  dict(id={event.event_id.int}, type={str(event.event_type.value)!r}, device={event.anonymous_id!r}, "
                f"session={event.session_id!r}, image={image}, event_ts={ms(event.event_ts)}, "
                f"received_at={ms(event.received_at)}, client_ts={ms(event.client_ts)}, **{extra!r}),"
            )
    lines.append("]")
    return "\n".join(lines)
