"""The drop-off analytics equal their pandas reference (tests/helpers/reference_dropoff.py) on
generated adversarial clickstreams (ties, resends, re-entries, window edges, filters, both modes),
before and after ``OPTIMIZE TABLE events FINAL``; a drop-off driver planted in simulated journeys
comes out on top of the correlation with a significance mark; the statistics are PostHog's odds
ratio with Fisher's exact test and Benjamini-Hochberg's mark.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact

from clickhouse import funnel_analysis
from clickhouse.backend import Warehouse
from clickhouse.queries import Breakdown, FunnelFilters, FunnelMode, FunnelRequest, Unit
from clickhouse.workspace import funnel_routes
from funnelstream.contract import EventType
from ops.journeys import JourneySpec, collector_payloads, enriched, journeys
from tests.helpers import reference_dropoff
from tests.helpers.adversarial_events import EXPERIMENT, FROM, TO, WINDOW_S, Dataset, datasets, describe, load
from tests.helpers.adversarial_events import truncate_all as empty_tables
from tests.helpers.warehouse import enriched as event_at
from tests.helpers.warehouse import load as load_events
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
STEP_LISTS = (
    ("image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted"),
    ("image_uploaded", "tool_selected", "image_saved"),
    ("tool_selected", "inference_requested", "image_saved"),
    ("image_uploaded", "inference_requested"),
)
EXCLUDES = ("", "", "", "segments_proposed", "score_submitted")
FILTERS = (
    FunnelFilters(),
    FunnelFilters(),
    FunnelFilters(tool="brush"),
    FunnelFilters(browser="Chrome", size="medium"),
    FunnelFilters(variant="treatment"),
)


@pytest.fixture(scope="module")
def warehouse(shared_chdb_path: Path) -> Iterator[Warehouse]:
    opened, _ = open_test_warehouse("chdb", shared_chdb_path)
    yield opened
    drop_and_close(opened)


@st.composite
def cases(draw: st.DrawFn) -> tuple[FunnelRequest, int]:
    steps = draw(st.sampled_from(STEP_LISTS))
    request = FunnelRequest(
        start=FROM,
        end=TO,
        steps=steps,
        window_s=WINDOW_S,
        unit=draw(st.sampled_from(list(Unit))),
        mode=draw(st.sampled_from(list(FunnelMode))),
        breakdown=draw(st.sampled_from((Breakdown.NONE, Breakdown.NONE, Breakdown.VARIANT, Breakdown.TOOL))),
        experiment=EXPERIMENT,
        exclude=draw(st.sampled_from([kind for kind in EXCLUDES if kind not in steps])),
        filters=draw(st.sampled_from(FILTERS)),
    )
    return request, draw(st.integers(2, len(steps)))


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


def answers(warehouse: Warehouse, request: FunnelRequest, step: int) -> dict[str, Any]:
    """Every drop-off answer in the shape its reference has."""
    over_time = funnel_analysis.over_time(warehouse, request, "hour").rows
    histogram = funnel_analysis.ttc_histogram(warehouse, request).rows
    dropped = funnel_analysis.dropped_units(warehouse, request, step, 100_000).rows
    paths = funnel_analysis.paths_after_dropoff(warehouse, request, step, 2, 100_000).rows
    counts = funnel_analysis.correlation_counts(warehouse, request, step, 0).rows
    for row in histogram:
        assert (row["bin_start_s"], row["bin_end_s"]) == (
            (0 if row["bin"] == 0 else 2 ** (row["bin"] - 1)),
            2 ** row["bin"],
        )
    if paths:
        assert sum(row["share"] for row in paths) == pytest.approx(1.0)
    return {
        "over_time": {
            (row["bucket"], row["step"]): (row["units"], pytest.approx(row["conversion"]), row["complete"])
            for row in over_time
        },
        "histogram": {(row["step"], row["bin"]): row["units"] for row in histogram},
        "quantiles": {row["step"]: (row["p50_s"], row["p90_s"]) for row in histogram},
        "dropped": [
            (row["unit_id"], row["anonymous_id"], _ms(row["entered_at"]), _ms(row["last_step_at"])) for row in dropped
        ],
        "paths": {row["path"]: row["units"] for row in paths},
        "correlation": {
            (row["kind"], row["property"], row["value"]): (
                row["converted"],
                row["dropped"],
                row["converted_without"],
                row["dropped_without"],
            )
            for row in counts
        },
    }


def expected(dataset: Dataset, request: FunnelRequest, step: int) -> dict[str, Any]:
    events = dataset.events
    over_time = reference_dropoff.over_time(events, request, "hour", datetime.now(UTC))
    bins, quantiles = reference_dropoff.ttc_histogram(events, request)
    return {
        "over_time": {key: (units, ratio, complete) for key, (units, ratio, complete) in over_time.items()},
        "histogram": bins,
        "quantiles": quantiles,
        "dropped": reference_dropoff.dropped_units(events, request, step),
        "paths": reference_dropoff.paths_after_dropoff(events, request, step, 2),
        "correlation": reference_dropoff.correlation_counts(events, request, step),
    }


@PROPERTY
@given(dataset=datasets(max_images=12), case=cases())
def test_dropoff_answers_equal_the_reference(
    warehouse: Warehouse, dataset: Dataset, case: tuple[FunnelRequest, int]
) -> None:
    request, step = case
    reference = expected(dataset, request, step)
    # Most small clickstreams have no unit that drops at the step: those say nothing here.
    assume(reference["dropped"] and reference["histogram"])
    note(describe(dataset))
    note(f"{request!r}, step {step}")
    empty_tables(warehouse)
    load(warehouse, dataset)
    assert answers(warehouse, request, step) == reference
    warehouse.command("OPTIMIZE TABLE events FINAL")
    assert answers(warehouse, request, step) == reference


def test_buckets_complete_only_once_their_window_has_passed(warehouse: Warehouse) -> None:
    empty_tables(warehouse)
    now = datetime.now(UTC).replace(microsecond=0)
    past, soon = now - timedelta(days=2), now + timedelta(hours=1)
    load_events(
        warehouse,
        [
            event_at(EventType.IMAGE_UPLOADED, past, "d1", input_id="00000000-0000-0000-0000-000000000001"),
            event_at(
                EventType.TOOL_SELECTED,
                past + timedelta(seconds=5),
                "d1",
                input_id="00000000-0000-0000-0000-000000000001",
            ),
            event_at(EventType.IMAGE_UPLOADED, soon, "d2", input_id="00000000-0000-0000-0000-000000000002"),
        ],
    )
    request = FunnelRequest(
        start=now - timedelta(days=3), end=now + timedelta(hours=2), steps=("image_uploaded", "tool_selected")
    )
    rows = funnel_analysis.over_time(warehouse, request, "day").rows
    by_bucket = {
        (row["bucket"].date(), row["step"]): (row["units"], row["conversion"], row["complete"]) for row in rows
    }
    assert by_bucket == {
        (past.date(), 1): (1, 1.0, True),
        (past.date(), 2): (1, 1.0, True),
        (soon.date(), 1): (1, 1.0, False),
        (soon.date(), 2): (0, 0.0, False),
    }


def test_a_planted_driver_tops_the_correlation_with_a_mark(warehouse: Warehouse) -> None:
    """Images edited with the brush save half as often: at the save step the brush is the
    property furthest from an odds ratio of 1, below it, and significant."""
    empty_tables(warehouse)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    spec = JourneySpec(
        units=600,
        start=start,
        exposure_window_s=3600.0,
        image_gap_s=60.0,
        tool_rate=0.95,
        inference_rate=0.95,
        image_save_rate=0.6,
        control_tools=(1, 2, 3),
        treatment_tools=(1, 2, 3),
        pre_exposure_share=0.0,
        tool_save_factors=((2, 0.5),),
    )
    load_events(warehouse, enriched(collector_payloads(journeys(spec, 7), library="funnelstream-js"), 7))
    request = FunnelRequest(
        start=start,
        end=start + timedelta(days=2),
        steps=("image_uploaded", "tool_selected", "inference_requested", "image_saved"),
    )
    rows = funnel_analysis.correlation(warehouse, request, 4, 10).rows
    top = rows[0]
    assert (top["kind"], top["property"], top["value"]) == ("dimension", "tool", "brush"), rows[:3]
    assert top["odds_ratio"] < 0.6 and top["significant"], top
    assert all(row["converted"] + row["dropped"] >= 10 for row in rows)


def test_statistics_are_smoothed_odds_fisher_and_benjamini_hochberg() -> None:
    rows = [
        {
            "property": "tool",
            "value": "a",
            "converted": 10,
            "dropped": 40,
            "converted_without": 90,
            "dropped_without": 60,
        },
        {
            "property": "tool",
            "value": "b",
            "converted": 30,
            "dropped": 31,
            "converted_without": 70,
            "dropped_without": 69,
        },
        {"property": "os", "value": "c", "converted": 0, "dropped": 5, "converted_without": 100, "dropped_without": 95},
        # Every unit has it: nothing to compare with, whatever smoothing would make of it.
        {
            "property": "source",
            "value": "web",
            "converted": 100,
            "dropped": 100,
            "converted_without": 0,
            "dropped_without": 0,
        },
    ]
    out = funnel_analysis.correlation_statistics(rows)
    by_value = {row["value"]: row for row in out}
    assert by_value["a"]["odds_ratio"] == pytest.approx((11 / 41) / (91 / 61))
    assert by_value["c"]["odds_ratio"] == pytest.approx((1 / 6) / (101 / 96))
    for row in out:
        table = [[row["converted"], row["dropped"]], [row["converted_without"], row["dropped_without"]]]
        assert row["p_value"] == pytest.approx(fisher_exact(table).pvalue)
    assert "web" not in by_value
    # Sorted by |log odds ratio|: c (1/6.3) before a (1/5.6), b last.
    assert [row["value"] for row in out] == ["c", "a", "b"]
    # BH at 5 % over three: a (p ~ 1e-5) passes 0.05/3; c (p ~ 0.06) fails 0.1 and 0.05; b fails.
    assert [row["significant"] for row in out] == [False, True, False]
    assert funnel_analysis.correlation_statistics([]) == []


@pytest.fixture
def client(warehouse: Warehouse) -> Iterator[TestClient]:
    """The drop-off routes on a bare app whose analyst reader is the test warehouse."""
    app = FastAPI()
    app.include_router(funnel_routes.router)
    app.state.warehouse = SimpleNamespace(reader=warehouse)
    with TestClient(app) as test_client:
        yield test_client


RANGE = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-22T00:00:00Z"}
ROUTES = (
    "/v1/funnel/over-time",
    "/v1/funnel/time-to-convert/histogram",
    "/v1/funnel/dropped",
    "/v1/funnel/paths-after-dropoff",
    "/v1/funnel/correlation",
)
HOSTILE = (
    ("/v1/funnel/dropped", "step", "1"),
    ("/v1/funnel/dropped", "step", "6"),
    ("/v1/funnel/correlation", "step", "2; DROP TABLE events"),
    ("/v1/funnel/paths-after-dropoff", "depth", "0"),
    ("/v1/funnel/paths-after-dropoff", "depth", "6"),
    ("/v1/funnel/paths-after-dropoff", "limit", "0"),
    ("/v1/funnel/dropped", "limit", "100001"),
    ("/v1/funnel/correlation", "min_count", "-1"),
    ("/v1/funnel/over-time", "interval", "week"),
    ("/v1/funnel/over-time", "format", "xml"),
    ("/v1/funnel/time-to-convert/histogram", "chart", "perhaps"),
)


@pytest.mark.parametrize(("route", "name", "value"), HOSTILE)
def test_a_hostile_parameter_is_a_422_naming_it(client: TestClient, route: str, name: str, value: str) -> None:
    response = client.get(route, params={**RANGE, name: value})
    assert response.status_code == 422, response.text
    assert name in response.text


def test_a_step_beyond_the_funnel_is_a_422_naming_it(client: TestClient) -> None:
    response = client.get(
        "/v1/funnel/correlation", params={**RANGE, "steps": "image_uploaded,tool_selected", "step": 3}
    )
    assert response.status_code == 422, response.text
    assert "step" in response.text


@pytest.mark.parametrize("route", ROUTES)
def test_each_route_answers_rows_sql_figure_and_the_same_csv(client: TestClient, route: str) -> None:
    empty_tables(client.app.state.warehouse.reader)  # type: ignore[attr-defined]
    at = datetime(2026, 11, 21, 10, tzinfo=UTC)
    image = "00000000-0000-0000-0000-000000000007"
    other = "00000000-0000-0000-0000-000000000008"
    load_events(
        client.app.state.warehouse.reader,  # type: ignore[attr-defined]
        [
            event_at(EventType.IMAGE_UPLOADED, at, "d1", input_id=image, width=800, height=600),
            event_at(
                EventType.TOOL_SELECTED, at + timedelta(seconds=3), "d1", input_id=image, tool_id=2, tool_name="brush"
            ),
            event_at(EventType.SEGMENTS_PROPOSED, at + timedelta(seconds=4), "d1", input_id=image),
            # A second image, so that some property is not on every unit (the correlation has rows).
            event_at(EventType.IMAGE_UPLOADED, at, "d2", input_id=other, width=800, height=600),
            event_at(
                EventType.TOOL_SELECTED,
                at + timedelta(seconds=2),
                "d2",
                input_id=other,
                tool_id=1,
                tool_name="rectangle",
            ),
            event_at(EventType.INFERENCE_REQUESTED, at + timedelta(seconds=5), "d2", input_id=other),
        ],
    )
    params = {**RANGE, "steps": "image_uploaded,tool_selected,inference_requested", "step": 3, "min_count": 0}
    answer = client.get(route, params={**params, "chart": 1})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["rows"] and body["row_count"] == len(body["rows"])
    assert "FROM funnel_units(" in body["sql"] and "{" not in body["sql"].split("FROM funnel_units(")[1][:40]
    assert ("figure" in body) is (route != "/v1/funnel/dropped")
    csv_answer = client.get(route, params={**params, "format": "csv"})
    assert csv_answer.status_code == 200
    assert csv_answer.text.splitlines()[0].split(",") == list(body["rows"][0])
    assert len(csv_answer.text.splitlines()) == 1 + len(body["rows"])
