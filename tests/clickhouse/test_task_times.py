"""Task time through the named queries: task_times and task_time_summary read the task_durations
view (first tool click to the save of an inferred result, capped), the summary's quantiles are the
lower inverted-CDF quantile of docs/analytics-definitions.md (the Python analysis's definition),
and its variant breakdown counts exactly the images of experiment_task_durations."""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from clickhouse import queries
from clickhouse.backend import Warehouse
from clickhouse.queries import Breakdown
from tests.helpers.event_rows import EXPERIMENT_RANGE_SQL, event, insert_events

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 20, tzinfo=UTC)


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def task(
    click: datetime, seconds: float, *, device: str = "device-1", tool: str = "brush", image: str | None = None
) -> list[dict[str, Any]]:
    """One image: a tool click, an inference a second later, and the save `seconds` after the click."""
    image = image or str(uuid.uuid4())
    common = {"input_id": image, "anonymous_id": device}
    return [
        event("tool_selected", _ts(click), tool_name=tool, **common),
        event("inference_requested", _ts(click + timedelta(seconds=min(1, seconds))), **common),
        event("image_saved", _ts(click + timedelta(seconds=seconds)), **common),
    ]


def lower_quantile(values: list[float], level: str) -> float:
    """The smallest value with at least a share `level` of the values at or below it, in exact
    arithmetic (clickhouse.experiments.stats.weighted_quantiles computes the same in Python)."""
    ordered = sorted(values)
    return ordered[math.ceil(Fraction(level) * len(ordered)) - 1]


def test_task_times_give_the_seconds_to_the_save_of_an_inferred_result(warehouse: Warehouse) -> None:
    # Tool at 20 s, save at 23 s, inference at 25 s, save at 40 s.
    image = str(uuid.uuid4())
    base = datetime(2026, 3, 1, 10, tzinfo=UTC)
    insert_events(
        warehouse,
        [
            event(kind, _ts(base + timedelta(seconds=at)), input_id=image)
            for kind, at in (
                ("tool_selected", 20),
                ("image_saved", 23),
                ("inference_requested", 25),
                ("image_saved", 40),
            )
        ],
    )
    rows = queries.task_times(warehouse, START, END)
    assert [(str(row["input_id"]), row["diff_second"], row["over_cap"]) for row in rows] == [(image, 20.0, 0)]
    summary = queries.task_time_summary(warehouse, START, END)
    assert [(row["images"], row["saved_images"], row["mean_s"]) for row in summary] == [(1, 1, 20.0)]


def test_a_task_over_the_cap_is_an_image_without_a_save(warehouse: Warehouse) -> None:
    click = datetime(2026, 3, 1, 10, tzinfo=UTC)
    insert_events(warehouse, [*task(click, 3600), *task(click, 3600.001), *task(click, 30)])
    summary = queries.task_time_summary(warehouse, START, END)
    assert [(row["images"], row["saved_images"], row["mean_s"], row["p50_s"]) for row in summary] == [
        (3, 2, 1815.0, 30.0)
    ]


def test_summary_quantiles_are_the_lower_inverted_cdf(warehouse: Warehouse) -> None:
    # Day k of March holds k images, so the quantiles are judged at every count from 1 to 12, the
    # even ones (lower middle value) and n = 10 (P90 is the 9th value, not the 10th) included.
    generator = random.Random(17)
    expected: dict[str, list[float]] = {}
    rows: list[dict[str, Any]] = []
    for day in range(1, 13):
        click = datetime(2026, 3, day, 10, tzinfo=UTC)
        seconds = [generator.randint(2, 3000) + generator.choice((0, 0.5)) for _ in range(day)]
        expected[str(click.date())] = seconds
        for index, value in enumerate(seconds):
            rows.extend(task(click + timedelta(minutes=index), value))
    insert_events(warehouse, rows)
    summary = queries.task_time_summary(warehouse, START, END, Breakdown.DAY)
    assert [row["breakdown"] for row in summary] == sorted(expected)
    for row in summary:
        values = expected[row["breakdown"]]
        assert (row["images"], row["saved_images"]) == (len(values), len(values))
        lower = [lower_quantile(values, level) for level in ("0.5", "0.9", "0.99")]
        assert [row["p50_s"], row["p90_s"], row["p99_s"]] == lower, row["breakdown"]
        assert row["mean_s"] == pytest.approx(sum(values) / len(values), abs=1e-3)
    even = next(row for row in summary if row["breakdown"] == "2026-03-04")
    assert even["p50_s"] == sorted(expected["2026-03-04"])[1]  # the lower of the two middle values


def test_summary_by_variant_counts_the_experiments_clean_units(warehouse: Warehouse) -> None:
    def exposure(device: str, at: str, variant: str, **columns: Any) -> dict[str, Any]:
        return event(
            "experiment_exposure", at, anonymous_id=device, experiment_key="checkout", variant=variant, **columns
        )

    click = datetime(2026, 3, 2, 10, tzinfo=UTC)
    insert_events(
        warehouse,
        [
            exposure("a", "2026-03-02 09:00:00", "control"),
            *task(click, 10, device="a"),
            *task(click, 30, device="a"),
            *task(click - timedelta(hours=2), 50, device="a"),  # before a's exposure
            exposure("b", "2026-03-02 09:00:00", "treatment"),
            *task(click, 20, device="b"),
            # c and d are one person in two arms: both are left out.
            exposure("c", "2026-03-02 09:00:00", "treatment", user_id="U1"),
            exposure("d", "2026-03-02 09:00:00", "control", user_id="U1"),
            *task(click, 99, device="c"),
            *task(click, 99, device="d"),
            *task(click, 77, device="e"),  # never exposed
        ],
    )
    summary = queries.task_time_summary(warehouse, START, END, Breakdown.VARIANT, "checkout")
    assert [(row["breakdown"], row["images"], row["saved_images"], row["mean_s"]) for row in summary] == [
        ("control", 2, 2, 20.0),
        ("treatment", 1, 1, 20.0),
    ]
    durations = warehouse.query_rows(
        f"SELECT variant, count() AS images, avg(diff_second) AS mean_s "
        f"FROM experiment_task_durations({EXPERIMENT_RANGE_SQL}) GROUP BY variant ORDER BY variant",
        {"experiment": "checkout", "from": START, "to": END},
    )
    assert [(row["variant"], row["images"], row["mean_s"]) for row in durations] == [
        (row["breakdown"], row["images"], row["mean_s"]) for row in summary
    ]
    everything = queries.task_time_summary(warehouse, START, END)
    assert [(row["images"], row["saved_images"]) for row in everything] == [(7, 7)]


def test_tool_breakdown_takes_the_first_tool_clicked(warehouse: Warehouse) -> None:
    click = datetime(2026, 3, 2, 10, tzinfo=UTC)
    image = str(uuid.uuid4())
    insert_events(
        warehouse,
        [
            *task(click, 10, image=image, tool="segment"),
            event("tool_selected", _ts(click), input_id=image, tool_name="brush"),  # same ms: smallest name
            event("tool_selected", _ts(click + timedelta(seconds=5)), input_id=image, tool_name="eraser"),
        ],
    )
    summary = queries.task_time_summary(warehouse, START, END, Breakdown.TOOL)
    assert [(row["breakdown"], row["images"]) for row in summary] == [("brush", 1)]
