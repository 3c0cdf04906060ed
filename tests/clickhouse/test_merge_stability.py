"""Every named query gives the same answer before and after ``OPTIMIZE TABLE events FINAL``.

A resend keeps event_id and client_ts but may carry another sent_at, received_at and event_ts.
The first received copy counts (docs/analytics-definitions.md, "Events: which
copy counts"): the table keeps it at a merge and FINAL picks it before one, so a query that reads
``events FINAL`` cannot tell whether parts were merged. The data: a generated clickstream, a share
of its events resent with another time, the two copies of an event loaded in two separate loader
inserts (Arrow, the loader's path), in either order, so that the last inserted is not always the
first received.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from clickhouse import queries
from clickhouse.backend import Warehouse
from clickhouse.loader import Message, decode_events
from funnelstream.contract import EnrichedEvent, EventType
from ops.journeys import CLICKSTREAM_START as START
from ops.journeys import EXPERIMENT_KEY as EXPERIMENT
from ops.journeys import clickstream
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

END = START + timedelta(days=5)
STEPS = ("image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted")

# A value for each parameter a named query declares, by name; a new name fails the test until it
# gets one here.
PARAMETERS: dict[str, Any] = {
    "from": START,
    "to": END,
    "window_s": 3600,
    "unit": "input_id",
    "breakdown": "none",
    "experiment": EXPERIMENT,
    "experiment_key": EXPERIMENT,
    "exclude": "",
    "mode": "ordered",
    **{f"filter_{name}": "" for name in ("tool", "inference_type", "variant", "source", "browser", "os", "device")},
    "filter_size": "",
    "step": 2,
    "interval": "day",
    "depth": 3,
    "min_count": 1,
    **{f"step{index + 1}": step for index, step in enumerate(STEPS)},
    "limit": 1_000_000,
    "minutes": 60,
    "now": END,
    "skew_limit_s": 60,
    "grace_s": 600,
    "lookback_days": 7,
    "control_key": "control",
    "tolerance_ms": 1000,
    "min_baseline_days": 1,
    "min_volume": 1,
    "min_score": None,
    "inference_type": None,
    "model_version": None,
    "dimension": "tool",
    "tool": "",
    "variant": "",
    "input_id": uuid.UUID(int=1),
}
# A second look where a parameter makes a query read other events: the variant breakdown reads
# the experiment's units, the tool breakdown a value of a step, the device unit all of a device's
# events. (The other breakdowns read the entry event, as the default does.)
VARIATIONS: dict[str, list[dict[str, Any]]] = {
    "breakdown": [{"breakdown": "variant"}, {"breakdown": "tool"}],
    "unit": [{"unit": "anonymous_id"}],
    "dimension": [{"dimension": "variant"}],
}
# Measures copies that a merge has not collapsed yet: by design only until the merge.
UNMERGED_COPIES = "same event_id stored more than once"


def cases() -> list[Any]:
    out = []
    for name in queries.names():
        declared = queries.parameters_of(queries.load(name))
        out.append(pytest.param(name, {}, id=name))
        for parameter, variations in VARIATIONS.items():
            if parameter in declared:
                out += [pytest.param(name, v, id=f"{name}-{'-'.join(map(str, v.values()))}") for v in variations]
    return out


def parameters_for(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    declared = queries.parameters_of(queries.load(name))
    missing = sorted(set(declared) - set(PARAMETERS))
    assert not missing, f"{name} declares {missing}: give them a value in PARAMETERS"
    return {parameter: overrides.get(parameter, PARAMETERS[parameter]) for parameter in declared}


def resent(event: EnrichedEvent, rng: random.Random) -> EnrichedEvent:
    """The same event sent again later, with another sent_at and event_ts."""
    shift = timedelta(seconds=rng.choice((-1, 1)) * rng.uniform(1, 600))
    received = event.received_at + timedelta(seconds=rng.uniform(1, 1200))
    return event.model_copy(
        update={
            "event_ts": event.event_ts + shift,
            "sent_at": received - timedelta(milliseconds=rng.randint(10, 900)),
            "received_at": received,
            "enriched_at": received + timedelta(milliseconds=5),
        }
    )


def example_image() -> list[tuple[EnrichedEvent, EnrichedEvent | None]]:
    """A save whose resend moves it; 610 s counted (first received) or 70 s."""
    device, image = "device-example", uuid.uuid4()
    at = START + timedelta(hours=5)

    def make(kind: EventType, offset_s: float, **fields: Any) -> EnrichedEvent:
        ts = at + timedelta(seconds=offset_s)
        return EnrichedEvent(
            event_id=uuid.uuid4(), event_type=kind, schema_version=1, anonymous_id=device, input_id=image,
            session_id=f"{device}:1", client_ts=ts, sent_at=ts, received_at=ts + timedelta(seconds=1),
            event_ts=ts, source="web", experiments={EXPERIMENT: "control"},
            enriched_at=ts + timedelta(seconds=1), **fields,
        )  # fmt: skip

    job = uuid.uuid4()
    save = make(EventType.IMAGE_SAVED, 610, job_id=job)
    moved = save.model_copy(
        update={
            "event_ts": at + timedelta(seconds=70),
            "sent_at": None,
            "received_at": save.received_at + timedelta(minutes=10),
            "enriched_at": save.received_at + timedelta(minutes=10),
        }
    )
    return [
        (make(EventType.IMAGE_UPLOADED, -5), None),
        (make(EventType.TOOL_SELECTED, 0, tool_id=2, tool_name="brush", tool_type="manual"), None),
        (make(EventType.INFERENCE_REQUESTED, 30, job_id=job, inference_id=1, inference_type="inpainting"), None),
        (save, moved),
    ]


def load(warehouse: Warehouse, events: list[EnrichedEvent]) -> None:
    messages = [Message("events.enriched", 0, i, None, e.model_dump_json().encode()) for i, e in enumerate(events)]
    table, rejected = decode_events(messages)
    assert not rejected
    warehouse.insert_arrow("events", table)


@pytest.fixture(scope="module")
def answers(shared_chdb_path: Path) -> Iterator[tuple[Warehouse, dict[str, Any]]]:
    """The warehouse, loaded, with every case's answer before the merge; the merge done."""
    rng = random.Random(6)
    data = clickstream(images=80, devices=24, seed=6, duplicate_share=0)
    pairs: list[tuple[EnrichedEvent, EnrichedEvent | None]] = [
        (event, resent(event, rng) if rng.random() < 0.4 else None) for event in data.events
    ]
    pairs += example_image()
    first_insert, second_insert = [], []
    for original, copy in pairs:
        if copy is None:
            first_insert.append(original)
        elif rng.random() < 0.5:
            first_insert.append(original)
            second_insert.append(copy)
        else:  # the first received copy inserted last
            first_insert.append(copy)
            second_insert.append(original)
    warehouse, _ = open_test_warehouse("chdb", shared_chdb_path)
    load(warehouse, first_insert)
    load(warehouse, second_insert)
    assert warehouse.query_rows("SELECT count() > uniqExact(event_id) AS copies FROM events") == [{"copies": 1}]
    before: dict[str, Any] = {}
    for case in cases():
        name, overrides = case.values
        try:
            before[case.id] = queries.run(warehouse, name, parameters_for(name, overrides))
        except Exception as exc:  # judged in the case's own test
            before[case.id] = exc
    warehouse.command("OPTIMIZE TABLE events FINAL")
    assert warehouse.query_rows("SELECT count() = uniqExact(event_id) AS merged FROM events") == [{"merged": 1}]
    yield warehouse, before
    drop_and_close(warehouse)


def comparable(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    kept = [row for row in rows if UNMERGED_COPIES not in str(row.get("subject", ""))]
    # A query without ORDER BY promises its rows, not their order (readers sum them per unit).
    if not ordered(name):
        kept.sort(key=lambda row: repr(sorted(row.items())))
    return kept


def ordered(name: str) -> bool:
    code = "\n".join(line.split("--", 1)[0] for line in queries.load(name).splitlines())
    return "ORDER BY" in code.upper()


@pytest.mark.parametrize(("name", "overrides"), cases())
def test_a_named_query_answers_the_same_after_a_merge(
    answers: tuple[Warehouse, dict[str, Any]], request: pytest.FixtureRequest, name: str, overrides: dict[str, Any]
) -> None:
    warehouse, before = answers
    case_id = request.node.callspec.id
    if isinstance(before[case_id], Exception):
        raise before[case_id]
    after = queries.run(warehouse, name, parameters_for(name, overrides))
    assert comparable(after, name) == comparable(before[case_id], name)


def test_the_first_received_copy_counts_in_task_time(answers: tuple[Warehouse, dict[str, Any]]) -> None:
    warehouse, _ = answers
    rows = queries.task_times(warehouse, START, END)
    example = [row for row in rows if row["anonymous_id"] == "device-example"]
    assert [row["diff_second"] for row in example] == [610.0]
