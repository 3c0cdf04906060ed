"""Funnel, time-to-convert, task-time, trend and score queries equal the pandas reference
(tests/helpers/reference.py, written from docs/analytics-definitions.md) on a generated dataset
with duplicates, out-of-order and late events, missing steps and re-entries. The adversarial edges
are the property test's (test_reference_property.py); this one checks realistic volume."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from clickhouse import queries
from clickhouse.backend import Warehouse
from clickhouse.loader import Message, decode_events
from clickhouse.queries import Breakdown, FunnelMode, FunnelRequest, Unit
from funnelstream.contract import EnrichedEvent
from ops.journeys import CLICKSTREAM_START as DATASET_START
from ops.journeys import Deliveries, clickstream
from tests.helpers import reference
from tests.helpers.warehouse_backends import BACKENDS, drop_and_close, open_test_warehouse

START = datetime(2026, 11, 20, tzinfo=UTC)
END = datetime(2026, 11, 25, tzinfo=UTC)
STEPS = ["image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted"]
EXPERIMENT = "segmentation_tool"


@pytest.fixture(scope="module")
def data() -> Deliveries:
    return clickstream(images=300, devices=80, seed=11)


@pytest.fixture(scope="module", params=BACKENDS)
def loaded(request: pytest.FixtureRequest, shared_chdb_path: Path, data: Deliveries) -> Iterator[Warehouse]:
    warehouse, _ = open_test_warehouse(request.param, shared_chdb_path)
    deliveries = data.deliveries
    # Several inserts, so duplicates sit in different parts and only a query-side collapse helps.
    for chunk_start in range(0, len(deliveries), 400):
        chunk = deliveries[chunk_start : chunk_start + 400]
        messages = [Message("events.enriched", 0, i, None, e.model_dump_json().encode()) for i, e in enumerate(chunk)]
        table, rejected = decode_events(messages)
        assert not rejected
        warehouse.insert_arrow("events", table)
    yield warehouse
    drop_and_close(warehouse)


def test_the_dataset_has_what_the_queries_must_survive(data: Deliveries) -> None:
    assert len(data.deliveries) > len(data.events) * 1.05  # duplicates
    assert any(event.is_late for event in data.events)
    times = [event.event_ts for event in data.deliveries]
    assert times != sorted(times)  # out of order


def test_events_are_collapsed_by_final(loaded: Warehouse, data: Deliveries) -> None:
    rows = loaded.query_rows("SELECT count() AS n, uniqExact(event_id) AS distinct FROM events FINAL")
    assert rows == [{"n": len(data.events), "distinct": len(data.events)}]


@pytest.mark.parametrize(
    ("unit", "breakdown", "exclude"),
    [
        (Unit.IMAGE, Breakdown.VARIANT, ""),
        (Unit.IMAGE, Breakdown.TOOL, ""),
        (Unit.IMAGE, Breakdown.NONE, "score_submitted"),
        (Unit.DEVICE, Breakdown.NONE, ""),
        (Unit.IMAGE, Breakdown.INFERENCE_TYPE, ""),
        (Unit.SESSION, Breakdown.SOURCE, ""),
        (Unit.DEVICE, Breakdown.DAY, "score_submitted"),
    ],
)
def test_funnel_matches_pandas(
    loaded: Warehouse, data: Deliveries, unit: Unit, breakdown: Breakdown, exclude: str
) -> None:
    steps = STEPS[:4] if exclude else STEPS
    request = FunnelRequest(
        start=START,
        end=END,
        steps=tuple(steps),
        window_s=3600,
        unit=unit,
        breakdown=breakdown,
        exclude=exclude,
        experiment=EXPERIMENT,
    )
    rows = queries.funnel(loaded, request)
    expected = reference.funnel(
        data.deliveries, steps, START, END, 3600, str(unit), str(breakdown), exclude, experiment=EXPERIMENT
    )
    assert {(row["breakdown"], row["step"]): row["units"] for row in rows} == expected
    for row in rows:
        assert row["step_name"] == steps[row["step"] - 1]
        first = expected[(row["breakdown"], 1)]
        previous = expected[(row["breakdown"], max(row["step"] - 1, 1))]
        assert row["conversion"] == pytest.approx(row["units"] / first)
        assert row["dropped"] == previous - row["units"]


def test_funnel_window_changes_the_answer(loaded: Warehouse, data: Deliveries) -> None:
    short = FunnelRequest(start=START, end=END, steps=tuple(STEPS[:4]), window_s=120)
    rows = queries.funnel(loaded, short)
    expected = reference.funnel(data.deliveries, STEPS[:4], START, END, 120, "input_id", "none")
    assert {(row["breakdown"], row["step"]): row["units"] for row in rows} == expected
    long_saves = reference.funnel(data.deliveries, STEPS[:4], START, END, 3600, "input_id", "none")[("all", 4)]
    assert expected[("all", 4)] < long_saves


def _strict_event(input_id: str, event_type: str, second: int) -> EnrichedEvent:
    at = DATASET_START.replace(hour=1, second=second)
    return EnrichedEvent(
        event_id=uuid.uuid4(), event_type=event_type, schema_version=1, anonymous_id="d",
        input_id=input_id, session_id="s", client_ts=at, received_at=at, event_ts=at, enriched_at=at,
    )  # fmt: skip


def test_strict_funnel_stops_at_an_intervening_step(warehouse: Warehouse) -> None:
    a, b = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
    events = [
        _strict_event(a, "image_uploaded", 1), _strict_event(a, "tool_selected", 2), _strict_event(a, "image_saved", 3),
        _strict_event(b, "image_uploaded", 1), _strict_event(b, "image_saved", 2), _strict_event(b, "tool_selected", 3),
        _strict_event(b, "image_saved", 4),
    ]  # fmt: skip
    payloads = [event.model_dump_json().encode() for event in events]
    table, _ = decode_events([Message("t", 0, i, None, p) for i, p in enumerate(payloads)])
    warehouse.insert_arrow("events", table)
    warehouse.insert_arrow("events", table)  # a replay: strict mode must not see the duplicates
    steps = ("image_uploaded", "tool_selected", "image_saved")
    ordered = queries.funnel(warehouse, FunnelRequest(start=DATASET_START, end=END, steps=steps))
    strict = queries.funnel(warehouse, FunnelRequest(start=DATASET_START, end=END, steps=steps, mode=FunnelMode.STRICT))
    assert [row["units"] for row in ordered] == [2, 2, 2]
    # b saves before picking a tool: strict order breaks its chain there.
    assert [row["units"] for row in strict] == [2, 1, 1]
    expected = reference.funnel(events, list(steps), DATASET_START, END, 3600, "input_id", strict=True)
    assert [expected[("all", step)] for step in (1, 2, 3)] == [2, 1, 1]


def test_time_to_convert_matches_pandas(loaded: Warehouse, data: Deliveries) -> None:
    request = FunnelRequest(start=START, end=END, steps=tuple(STEPS[:4]), window_s=3600)
    rows = queries.time_to_convert(loaded, request)
    expected = reference.time_to_convert(data.deliveries, STEPS[:4], START, END, 3600)
    got = {(row["breakdown"], row["step"]): row for row in rows if row["units"]}
    assert sorted(got) == sorted(expected)
    for key, row in got.items():
        values, from_entry = expected[key]["from_previous"], expected[key]["from_entry"]
        assert row["units"] == len(values)
        for name, level in (("p50_s", 0.5), ("p90_s", 0.9), ("p99_s", 0.99)):
            assert row[name] == pytest.approx(reference.quantile_low(values, level), abs=1e-3)
        assert row["p50_from_first_s"] == pytest.approx(reference.quantile_low(from_entry, 0.5), abs=1e-3)
        assert row["mean_s"] == pytest.approx(sum(values) / len(values), abs=1e-3)


def test_task_times_match_pandas(loaded: Warehouse, data: Deliveries) -> None:
    rows = queries.task_times(loaded, START, END)
    got = pd.DataFrame(rows)
    got["input_id"] = got["input_id"].astype(str)
    got = got.set_index("input_id").sort_index()
    expected = reference.task_times(data.deliveries, START, END)
    assert list(got.index) == list(expected.index)
    for column in ("tool_to_inference_s", "inference_to_save_s", "diff_second"):
        pd.testing.assert_series_equal(
            got[column].astype(float), expected[column].astype(float), check_names=False, atol=1e-6
        )
    assert got.diff_second.notna().sum() > 50


def test_task_time_summary_by_variant(loaded: Warehouse, data: Deliveries) -> None:
    rows = queries.task_time_summary(loaded, START, END, Breakdown.VARIANT, EXPERIMENT)
    expected = reference.task_time_groups(data.deliveries, START, END, "variant", EXPERIMENT)
    assert {row["breakdown"] for row in rows} == set(expected) == {"control", "treatment"}
    for row in rows:
        seconds = expected[row["breakdown"]]
        saved = [value for value in seconds if value is not None]
        assert (row["images"], row["saved_images"]) == (len(seconds), len(saved))
        assert row["mean_s"] == pytest.approx(sum(saved) / len(saved), abs=1e-3)
        for name, level in (("p50_s", 0.5), ("p90_s", 0.9), ("p99_s", 0.99)):
            assert row[name] == pytest.approx(reference.quantile_low(saved, level), abs=1e-3)


def test_daily_conversion_matches_pandas(loaded: Warehouse, data: Deliveries) -> None:
    rows = queries.daily_conversion(loaded, START, END, 3600)
    got = pd.DataFrame(rows).set_index("day")[["uploaded", "tool", "inference", "saved", "scored"]]
    expected = reference.daily_conversion(data.deliveries, START, END, 3600)
    assert [str(day) for day in got.index] == [str(day) for day in expected.index]
    assert got.to_numpy().tolist() == expected.to_numpy().tolist()


def test_scores_by_model_match_pandas(loaded: Warehouse, data: Deliveries) -> None:
    rows = queries.scores_by_model(loaded, START, END)
    got = {(row["inference_type"], row["model_version"]): row["mean_score"] for row in rows}
    assert got == pytest.approx(reference.scores_by_model(data.deliveries, START, END))


def test_seed_fact_tables_fill_from_events(loaded: Warehouse, data: Deliveries) -> None:
    def distinct(kind: str) -> int:
        return sum(1 for event in data.events if event.event_type == kind)

    assert loaded.query_rows("SELECT count() AS n FROM tool_clicks FINAL")[0]["n"] == distinct("tool_selected")
    assert loaded.query_rows("SELECT count() AS n FROM input_uploads FINAL")[0]["n"] == distinct("image_uploaded")
    assert loaded.query_rows("SELECT count() AS n FROM save_clicks FINAL")[0]["n"] == distinct("image_saved")
    assert loaded.query_rows("SELECT count() AS n FROM scores FINAL")[0]["n"] == distinct("score_submitted")
    jobs = loaded.query_rows(
        "SELECT count() AS n, countIf(mask_url IS NOT NULL AND result_url IS NOT NULL) AS with_urls "
        "FROM inference_clicks FINAL"
    )
    assert jobs == [{"n": distinct("inference_requested"), "with_urls": distinct("inference_requested")}]
    exposures = loaded.query_rows("SELECT uniqExact(anonymous_id) AS n FROM experiment_exposures FINAL")
    assert exposures[0]["n"] == distinct("experiment_exposure")


def test_every_named_query_declares_the_parameters_it_is_given() -> None:
    request = FunnelRequest(start=START, end=END)
    assert set(queries.parameters_of(queries.load("funnel"))) == set(request.parameters())
    assert set(queries.parameters_of(queries.load("funnel_strict"))) == set(request.parameters())
    assert set(queries.parameters_of(queries.load("time_to_convert"))) <= set(request.parameters())


def test_funnel_request_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="steps: unknown event type 'clicked'"):
        FunnelRequest(start=START, end=END, steps=("image_uploaded", "clicked"))
    with pytest.raises(ValueError, match="to: must be after from"):
        FunnelRequest(start=END, end=START)


def test_the_strict_funnel_differs_from_the_ordered_one_only_in_mode_and_final() -> None:
    def statement(name: str) -> list[str]:
        return [line for line in queries.load(name).splitlines() if not line.lstrip().startswith("--")]

    ordered = [
        line.replace(
            "windowFunnelIf({window_s:UInt64} * 1000)(", "windowFunnelIf({window_s:UInt64} * 1000, 'strict_order')("
        )
        for line in statement("funnel")
    ]
    assert statement("funnel_strict") == ordered
