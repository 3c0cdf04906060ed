"""Every named query equals the pandas reference (tests/helpers/reference.py, written from
docs/analytics-definitions.md) on generated adversarial clickstreams, before and after
``OPTIMIZE TABLE events FINAL``.

The datasets (tests/helpers/adversarial_events.py) put events on every edge the definitions
name: ties at one millisecond, resends with another event_ts received first or last, re-entries,
step-1 events on both sides of from and to, late steps inside and past the window, excluded
steps, task times on both sides of the cap, devices in both arms by exposure, map or user, and
forced exposures. One chdb database serves the module, emptied between examples; hypothesis runs
derandomized, so CI sees the same examples every run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, find, given, note, settings
from hypothesis import strategies as st

from clickhouse import queries
from clickhouse.backend import Warehouse
from clickhouse.queries import SIZE_BUCKETS, Breakdown, FunnelFilters, FunnelMode, FunnelRequest, Unit
from tests.helpers import reference
from tests.helpers.adversarial_events import (
    BROWSERS,
    DEVICE_TYPES,
    EXPERIMENT,
    FROM,
    INFERENCE_TYPES,
    OPERATING_SYSTEMS,
    SOURCES,
    TO,
    TOOLS,
    VARIANTS,
    WINDOW_S,
    Dataset,
    datasets,
    describe,
    load,
    truncate_all,
)
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

T = TypeVar("T")
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STEP_LISTS = (
    ("image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted"),
    ("image_uploaded", "tool_selected", "image_saved"),
    ("tool_selected", "inference_requested", "image_saved"),
    ("image_uploaded", "inference_requested"),
)
EXCLUDES = ("", "", "segments_proposed", "inference_completed", "score_submitted")


@pytest.fixture(scope="module")
def warehouse(shared_chdb_path: Path) -> Iterator[Warehouse]:
    opened, _ = open_test_warehouse("chdb", shared_chdb_path)
    yield opened
    drop_and_close(opened)


def both_ways(warehouse: Warehouse, dataset: Dataset, ask: Callable[[], T]) -> tuple[T, T]:
    """The answer on the dataset as inserted, and again after every copy has been merged away."""
    truncate_all(warehouse)
    load(warehouse, dataset)
    before = ask()
    warehouse.command("OPTIMIZE TABLE events FINAL")
    return before, ask()


def check(warehouse: Warehouse, dataset: Dataset, ask: Callable[[], T], expected: T) -> None:
    note(describe(dataset))
    before, after = both_ways(warehouse, dataset, ask)
    note(f"reference: {expected!r}")
    note(f"sql before OPTIMIZE: {before!r}")
    note(f"sql after OPTIMIZE: {after!r}")
    assert before == expected
    assert after == expected


# Per filter, the values the datasets hold and one they do not.
FILTER_VALUES: dict[str, tuple[str, ...]] = {
    "tool": (*TOOLS, "absent"),
    "inference_type": (*INFERENCE_TYPES, "absent"),
    "variant": (*VARIANTS, "absent"),
    "source": (*(source for source in SOURCES if source), "absent"),
    "browser": (*(value for value in BROWSERS if value), "absent"),
    "os": (*(value for value in OPERATING_SYSTEMS if value), "absent"),
    "device": (*(value for value in DEVICE_TYPES if value), "absent"),
    "size": tuple(name for name, _, _ in SIZE_BUCKETS),
}


@st.composite
def funnel_filters(draw: st.DrawFn) -> FunnelFilters:
    """Half the time no filter; else one or two filters."""
    chosen = draw(st.sampled_from((0, 0, 1, 2)))
    dimensions = draw(st.lists(st.sampled_from(sorted(FILTER_VALUES)), min_size=chosen, max_size=chosen, unique=True))
    return FunnelFilters(**{name: draw(st.sampled_from(FILTER_VALUES[name])) for name in dimensions})


@st.composite
def funnel_requests(draw: st.DrawFn, mode: FunnelMode) -> FunnelRequest:
    steps = draw(st.sampled_from(STEP_LISTS))
    exclude = draw(st.sampled_from([kind for kind in EXCLUDES if kind not in steps]))
    return FunnelRequest(
        start=FROM,
        end=TO,
        steps=steps,
        window_s=WINDOW_S,
        unit=draw(st.sampled_from(list(Unit))),
        mode=mode,
        breakdown=draw(st.sampled_from(list(Breakdown))),
        experiment=EXPERIMENT,
        exclude=exclude,
        filters=draw(funnel_filters()),
    )


def funnel_counts(rows: list[dict[str, Any]], steps: int) -> dict[tuple[str, int], int]:
    """(breakdown, step) -> units, zero rows left out; and each row's ratios checked against its counts."""
    counts = {(str(row["breakdown"]), int(row["step"])): int(row["units"]) for row in rows}
    for row in rows:
        entered = counts.get((str(row["breakdown"]), 1), 0)
        previous = counts.get((str(row["breakdown"]), max(int(row["step"]) - 1, 1)), 0)
        assert row["dropped"] == previous - row["units"], row
        assert row["conversion"] == pytest.approx(row["units"] / entered if entered else 0.0), row
    return {key: units for key, units in counts.items() if units and 1 <= key[1] <= steps}


def expected_funnel(dataset: Dataset, request: FunnelRequest) -> dict[tuple[str, int], int]:
    counts = reference.funnel(
        dataset.events,
        list(request.steps),
        request.start,
        request.end,
        request.window_s,
        str(request.unit),
        str(request.breakdown),
        request.exclude,
        request.experiment,
        strict=request.mode is FunnelMode.STRICT,
        filters=dataclasses.asdict(request.filters),
    )
    return {key: units for key, units in counts.items() if units}


@PROPERTY
@given(dataset=datasets(), request=funnel_requests(FunnelMode.ORDERED))
def test_funnel_equals_the_reference(warehouse: Warehouse, dataset: Dataset, request: FunnelRequest) -> None:
    note(repr(request))
    check(
        warehouse,
        dataset,
        lambda: funnel_counts(queries.funnel(warehouse, request), len(request.steps)),
        expected_funnel(dataset, request),
    )


@PROPERTY
@given(dataset=datasets(), request=funnel_requests(FunnelMode.STRICT))
def test_strict_funnel_equals_the_reference(warehouse: Warehouse, dataset: Dataset, request: FunnelRequest) -> None:
    note(repr(request))
    check(
        warehouse,
        dataset,
        lambda: funnel_counts(queries.funnel(warehouse, request), len(request.steps)),
        expected_funnel(dataset, request),
    )


def _seconds(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 3)


def time_to_convert_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (str(row["breakdown"]), int(row["step"])): {
            "units": int(row["units"]),
            "mean_s": _seconds(row["mean_s"]),
            "p50_s": _seconds(row["p50_s"]),
            "p90_s": _seconds(row["p90_s"]),
            "p99_s": _seconds(row["p99_s"]),
            "p50_from_first_s": _seconds(row["p50_from_first_s"]),
        }
        for row in rows
        if int(row["units"])
    }


def expected_time_to_convert(dataset: Dataset, request: FunnelRequest) -> dict[tuple[str, int], dict[str, Any]]:
    groups = reference.time_to_convert(
        dataset.events,
        list(request.steps),
        request.start,
        request.end,
        request.window_s,
        str(request.unit),
        request.exclude,
        str(request.breakdown),
        request.experiment,
        filters=dataclasses.asdict(request.filters),
    )
    out = {}
    for (value, step), seconds in groups.items():
        previous, first = seconds["from_previous"], seconds["from_entry"]
        out[(value, step)] = {
            "units": len(previous),
            "mean_s": round(sum(previous) / len(previous), 3),
            "p50_s": round(reference.quantile_low(previous, 0.5), 3),
            "p90_s": round(reference.quantile_low(previous, 0.9), 3),
            "p99_s": round(reference.quantile_low(previous, 0.99), 3),
            "p50_from_first_s": round(reference.quantile_low(first, 0.5), 3),
        }
    return out


@PROPERTY
@given(dataset=datasets(max_images=12), request=funnel_requests(FunnelMode.ORDERED))
def test_time_to_convert_equals_the_reference(warehouse: Warehouse, dataset: Dataset, request: FunnelRequest) -> None:
    note(repr(request))
    check(
        warehouse,
        dataset,
        lambda: time_to_convert_rows(queries.time_to_convert(warehouse, request)),
        expected_time_to_convert(dataset, request),
    )


def task_time_rows(rows: list[dict[str, Any]]) -> dict[str, tuple[float | None, float | None, float | None]]:
    return {
        str(row["input_id"]): (
            _seconds(row["tool_to_inference_s"]),
            _seconds(row["inference_to_save_s"]),
            _seconds(row["diff_second"]),
        )
        for row in rows
    }


@PROPERTY
@given(dataset=datasets())
def test_task_times_equal_the_reference(warehouse: Warehouse, dataset: Dataset) -> None:
    expected = reference.task_times(dataset.events, FROM, TO)
    check(
        warehouse,
        dataset,
        lambda: task_time_rows(queries.task_times(warehouse, FROM, TO)),
        {
            str(input_id): (
                _seconds(row.tool_to_inference_s),
                _seconds(row.inference_to_save_s),
                _seconds(row.diff_second),
            )
            for input_id, row in expected.iterrows()
        },
    )


def summary_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        str(row["breakdown"]): {
            "images": int(row["images"]),
            "saved_images": int(row["saved_images"]),
            "mean_s": _seconds(row["mean_s"]),
            "p50_s": _seconds(row["p50_s"]),
            "p90_s": _seconds(row["p90_s"]),
            "p99_s": _seconds(row["p99_s"]),
        }
        for row in rows
        if int(row["images"])
    }


def expected_summary(dataset: Dataset, breakdown: Breakdown) -> dict[str, dict[str, Any]]:
    groups = reference.task_time_groups(dataset.events, FROM, TO, str(breakdown), EXPERIMENT)
    out = {}
    for value, seconds in groups.items():
        saved = [s for s in seconds if s is not None]
        out[value] = {
            "images": len(seconds),
            "saved_images": len(saved),
            "mean_s": round(sum(saved) / len(saved), 3) if saved else None,
            "p50_s": round(reference.quantile_low(saved, 0.5), 3) if saved else None,
            "p90_s": round(reference.quantile_low(saved, 0.9), 3) if saved else None,
            "p99_s": round(reference.quantile_low(saved, 0.99), 3) if saved else None,
        }
    return out


@PROPERTY
@given(
    dataset=datasets(max_images=12),
    breakdown=st.sampled_from((Breakdown.NONE, Breakdown.VARIANT, Breakdown.TOOL)),
)
def test_task_time_summary_equals_the_reference(warehouse: Warehouse, dataset: Dataset, breakdown: Breakdown) -> None:
    note(repr(breakdown))
    check(
        warehouse,
        dataset,
        lambda: summary_rows(queries.task_time_summary(warehouse, FROM, TO, breakdown, EXPERIMENT)),
        expected_summary(dataset, breakdown),
    )


def daily_rows(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    names = ("uploaded", "tool", "inference", "saved", "scored")
    return {str(row["day"]): [int(row[name]) for name in names] for row in rows if int(row["uploaded"])}


@PROPERTY
@given(dataset=datasets())
def test_daily_conversion_equals_the_reference(warehouse: Warehouse, dataset: Dataset) -> None:
    expected = reference.daily_conversion(dataset.events, FROM, TO, WINDOW_S)
    check(
        warehouse,
        dataset,
        lambda: daily_rows(queries.daily_conversion(warehouse, FROM, TO, WINDOW_S)),
        {str(day): [int(value) for value in row] for day, row in expected.iterrows()},
    )


UNITS_SQL = (
    "SELECT anonymous_id, variant, toUnixTimestamp64Milli(first_exposure_at) AS first_exposure_ms, contaminated "
    "FROM experiment_units(experiment_key = {key:String}, range_start = {from:DateTime64(3, 'UTC')}, "
    "range_end = {to:DateTime64(3, 'UTC')}) ORDER BY anonymous_id"
)


def unit_rows(rows: list[dict[str, Any]]) -> dict[str, tuple[str | None, int, bool]]:
    """Device -> (arm, first exposure, contaminated); a contaminated device's arm is not defined."""
    return {
        str(row["anonymous_id"]): (
            None if row["contaminated"] else str(row["variant"]),
            int(row["first_exposure_ms"]),
            bool(row["contaminated"]),
        )
        for row in rows
    }


@PROPERTY
@given(dataset=datasets())
def test_experiment_units_equal_the_reference(warehouse: Warehouse, dataset: Dataset) -> None:
    expected = reference.experiment_units(dataset.events, EXPERIMENT, FROM, TO)
    check(
        warehouse,
        dataset,
        lambda: unit_rows(warehouse.query_rows(UNITS_SQL, {"key": EXPERIMENT, "from": FROM, "to": TO})),
        unit_rows(expected.to_dict("records")),
    )


ANALYSIS_STEPS = ("image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted")


def experiment_event_rows(frame: pd.DataFrame) -> list[tuple[str, str, str, int, str | None, int | None]]:
    """The query's rows of the analysis's step types, as the reference gives them."""
    return sorted(
        (
            str(row.anonymous_id),
            str(row.variant),
            str(row.event_type),
            int(pd.Timestamp(row.event_ts).value // 1_000_000),
            None if row.input_id is None or pd.isna(row.input_id) or str(row.input_id) == "" else str(row.input_id),
            None if row.score is None or pd.isna(row.score) else int(row.score),
        )
        for row in frame.itertuples()
        if row.event_type in ANALYSIS_STEPS
    )


@PROPERTY
@given(dataset=datasets())
def test_experiment_events_equal_the_reference(warehouse: Warehouse, dataset: Dataset) -> None:
    parameters = {"experiment_key": EXPERIMENT, "from": FROM, "to": TO}
    check(
        warehouse,
        dataset,
        lambda: experiment_event_rows(warehouse.query_df(queries.load("experiment_events"), parameters)),
        reference.experiment_events(dataset.events, EXPERIMENT, FROM, TO, ANALYSIS_STEPS),
    )


# --- the generator reaches every edge it claims -------------------------------------------------

FIND = settings(max_examples=300, derandomize=True, database=None, deadline=None, phases=[Phase.generate])


def _first_copies_moved(dataset: Dataset) -> bool:
    """A resend received first, inserted after the original, with another event_ts."""
    seen: dict[Any, tuple[int, Any]] = {}
    for number, batch in enumerate(dataset.batches):
        for event in batch:
            if event.event_id in seen:
                first_batch, first = seen[event.event_id]
                if event.received_at < first.received_at and event.event_ts != first.event_ts and number > first_batch:
                    return True
            else:
                seen[event.event_id] = (number, event)
    return False


def _contaminated_only_by(dataset: Dataset, reason: str) -> bool:
    df = reference.frame(dataset.events)
    units = reference.experiment_units_frame(df, EXPERIMENT, FROM, TO)
    if not units.contaminated.any():
        return False
    single_arm = units[units.contaminated.astype(bool)]
    for device in single_arm.anonymous_id:
        exposures = df[(df.anonymous_id == device) & (df.event_type == "experiment_exposure")]
        named = {e.get(EXPERIMENT) for e in df[df.anonymous_id == device].experiments} - {None}
        users = set(df[df.anonymous_id == device].user_id.dropna())
        one_variant = exposures[exposures.experiment_key == EXPERIMENT].variant.nunique() == 1
        if reason == "user" and one_variant and not named - set(exposures.variant) and users:
            return True
        if reason == "map" and one_variant and named - set(exposures.variant):
            return True
    return False


def _five_steps_through_a_tie(dataset: Dataset) -> bool:
    units = reference.funnel_units(dataset.events, list(STEP_LISTS[0]), FROM, TO, WINDOW_S, "input_id")
    return any(path.level == 5 and len(set(path.times)) < 5 for _, path in units.values())


def _a_chain_ends_at_the_window(dataset: Dataset) -> bool:
    units = reference.funnel_units(dataset.events, list(STEP_LISTS[1]), FROM, TO, WINDOW_S, "input_id")
    return any(path.times[-1] - path.times[0] == WINDOW_S * 1000 for _, path in units.values())


def _a_task_over_the_cap(dataset: Dataset) -> bool:
    times = reference.task_times(dataset.events, FROM, TO)
    return bool((times.tool_to_inference_s.notna() & times.diff_second.isna()).any())


def _a_clean_device_in_each_arm(dataset: Dataset) -> bool:
    units = reference.experiment_units(dataset.events, EXPERIMENT, FROM, TO)
    return set(units[~units.contaminated.astype(bool)].variant) == {"control", "treatment"}


SMALL = datasets(max_images=2, max_devices=1)


# find() describes each dataset it tries; the long descriptions are expected here.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@pytest.mark.parametrize(
    ("edge", "among", "holds"),
    [
        ("a resend received first, inserted later, with another event_ts", datasets(), _first_copies_moved),
        ("a five-step conversion through a tie", SMALL, _five_steps_through_a_tie),
        ("a chain that ends exactly at the window", datasets(), _a_chain_ends_at_the_window),
        ("a task over the cap", datasets(), _a_task_over_the_cap),
        ("a device contaminated only through a shared user", datasets(), lambda d: _contaminated_only_by(d, "user")),
        ("a device contaminated only through its map", datasets(), lambda d: _contaminated_only_by(d, "map")),
        ("a clean device in each arm", datasets(), _a_clean_device_in_each_arm),
    ],
)
def test_the_generator_reaches(edge: str, among: st.SearchStrategy[Dataset], holds: Callable[[Dataset], bool]) -> None:
    find(among, holds, settings=FIND)
