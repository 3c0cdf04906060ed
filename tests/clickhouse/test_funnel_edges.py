"""The funnel queries at their edges, on hand-made rows in real chdb.

What each test pins is a sentence of docs/analytics-definitions.md, "Funnels": entries in
[from, to) with later steps read up to to + window; one entry rule and one conversion path for
funnel, time to convert and the daily trend; breakdown values read from that path; the variant of
a unit from experiment_units, contaminated units left out; and answers that do not change when the
table merges a resent event's copies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clickhouse import queries
from clickhouse.backend import Warehouse
from clickhouse.queries import Breakdown, FunnelMode, FunnelRequest, Unit
from tests.helpers.event_rows import EXPERIMENT_RANGE_SQL, event, insert_events
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

DAY = datetime(2026, 11, 20, tzinfo=UTC)
STEPS = ("image_uploaded", "tool_selected", "inference_requested", "image_saved")


@pytest.fixture
def warehouse(shared_chdb_path: Path) -> Iterator[Warehouse]:
    opened, _ = open_test_warehouse("chdb", shared_chdb_path)
    yield opened
    drop_and_close(opened)


def _image() -> str:
    return str(uuid.uuid4())


def _units(rows: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    return {(str(row["breakdown"]), int(row["step"])): int(row["units"]) for row in rows}


def _timed_units(rows: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    return {(str(row["breakdown"]), int(row["step"])): int(row["units"]) for row in rows}


# A conversion that finishes after `to` counts; its range says whether it is final.


def test_a_save_after_midnight_counts_for_an_upload_before_it(warehouse: Warehouse) -> None:
    image = _image()
    insert_events(
        warehouse,
        [
            event("image_uploaded", "2026-11-20 23:59:50.000", input_id=image),
            event("tool_selected", "2026-11-20 23:59:55.000", input_id=image, tool_name="brush"),
            event("inference_requested", "2026-11-21 00:00:02.000", input_id=image, inference_type="inpainting"),
            event("image_saved", "2026-11-21 00:00:10.000", input_id=image),
        ],
    )
    request = FunnelRequest(start=DAY, end=DAY + timedelta(days=1), steps=STEPS, window_s=3600)
    for mode in FunnelMode:
        rows = queries.funnel(warehouse, replace(request, mode=mode))
        assert [row["units"] for row in rows] == [1, 1, 1, 1], mode
    timing = queries.time_to_convert(warehouse, request)
    assert [(row["step"], row["units"], row["p50_from_first_s"]) for row in timing] == [
        (2, 1, 5.0),
        (3, 1, 12.0),
        (4, 1, 20.0),
    ]
    trend = queries.daily_conversion(warehouse, DAY, DAY + timedelta(days=1), 3600)
    assert [(str(row["day"]), row["uploaded"], row["saved"]) for row in trend] == [("2026-11-20", 1, 1)]
    # The next day's range has no entry: the upload is not in it, and its steps alone are nothing.
    next_day = FunnelRequest(start=DAY + timedelta(days=1), end=DAY + timedelta(days=2), steps=STEPS)
    assert queries.funnel(warehouse, next_day) == []


def test_a_step_after_to_plus_window_does_not_count(warehouse: Warehouse) -> None:
    image = _image()
    insert_events(
        warehouse,
        [
            event("image_uploaded", "2026-11-20 23:59:50.000", input_id=image),
            event("tool_selected", "2026-11-21 00:00:50.001", input_id=image),
        ],
    )
    request = FunnelRequest(start=DAY, end=DAY + timedelta(days=1), steps=STEPS[:2], window_s=60)
    assert [row["units"] for row in queries.funnel(warehouse, request)] == [1, 0]
    longer = FunnelRequest(start=DAY, end=DAY + timedelta(days=1), steps=STEPS[:2], window_s=61)
    assert [row["units"] for row in queries.funnel(warehouse, longer)] == [1, 1]


def test_a_range_or_day_is_complete_only_once_its_window_is_past(warehouse: Warehouse) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.replace(hour=0, minute=0, second=0)
    recent = now - timedelta(seconds=30)
    image, earlier = _image(), _image()
    insert_events(
        warehouse,
        [
            event("image_uploaded", f"{today - timedelta(days=2):%Y-%m-%d} 12:00:00.000", input_id=earlier),
            event("image_uploaded", f"{recent:%Y-%m-%d %H:%M:%S}.000", input_id=image),
        ],
    )
    window = 3600
    # The day two days ago ended more than a window ago; the upload's day (or `to`) did not.
    trend = queries.daily_conversion(warehouse, today - timedelta(days=2), now, window)
    assert [(str(row["day"]), row["complete"]) for row in trend] == [
        (f"{today - timedelta(days=2):%Y-%m-%d}", True),
        (f"{recent:%Y-%m-%d}", False),
    ]
    assert not FunnelRequest(start=today, end=now, window_s=window).complete()
    assert FunnelRequest(start=today, end=now, window_s=window).complete(now + timedelta(seconds=window))
    assert FunnelRequest(start=today - timedelta(days=2), end=today - timedelta(days=1)).complete()


# Time to convert counts the units the funnel counts, step by step.


def test_time_to_convert_counts_the_units_the_funnel_counts(warehouse: Warehouse) -> None:
    reentered, plain = _image(), _image()
    insert_events(
        warehouse,
        [
            # Uploaded, nothing for 90 minutes, uploaded again, then a tool click: the second entry converts.
            event("image_uploaded", "2026-11-20 10:00:00.000", input_id=reentered, source="web"),
            event("image_uploaded", "2026-11-20 11:30:00.000", input_id=reentered, source="ios"),
            event("tool_selected", "2026-11-20 11:31:00.000", input_id=reentered, tool_name="segmentation"),
            event("inference_requested", "2026-11-20 11:32:00.000", input_id=reentered, inference_type="inpainting"),
            event("image_uploaded", "2026-11-20 12:00:00.000", input_id=plain, source="web"),
            event("tool_selected", "2026-11-20 12:00:30.000", input_id=plain, tool_name="brush"),
        ],
    )
    for breakdown in (Breakdown.NONE, Breakdown.TOOL, Breakdown.SOURCE, Breakdown.DAY, Breakdown.INFERENCE_TYPE):
        request = FunnelRequest(start=DAY, end=DAY + timedelta(days=1), steps=STEPS, breakdown=breakdown)
        funnel = {key: units for key, units in _units(queries.funnel(warehouse, request)).items() if key[1] > 1}
        timing = _timed_units(queries.time_to_convert(warehouse, request))
        assert {key: units for key, units in funnel.items() if units} == timing, breakdown
        assert sum(units for (_, step), units in funnel.items() if step == 2) == 2, breakdown
    timing = queries.time_to_convert(warehouse, FunnelRequest(start=DAY, end=DAY + timedelta(days=1), steps=STEPS))
    # Measured from the entry that converts (11:30), not from the first upload.
    assert [(row["step"], row["units"], row["mean_s"], row["p50_from_first_s"]) for row in timing] == [
        (2, 2, 45.0, 30.0),
        (3, 1, 60.0, 120.0),
    ]


# Breakdown values come from the conversion path.


def test_day_and_source_are_the_entry_events(warehouse: Warehouse) -> None:
    image = _image()
    insert_events(
        warehouse,
        [
            # A tool click the evening before the upload is no part of the path.
            event("tool_selected", "2026-11-20 23:00:00.000", input_id=image, source="ios", tool_name="brush"),
            event("image_uploaded", "2026-11-21 09:00:00.000", input_id=image, source="web"),
            event("tool_selected", "2026-11-21 09:01:00.000", input_id=image, source="web", tool_name="rectangle"),
        ],
    )
    request = FunnelRequest(start=DAY, end=DAY + timedelta(days=2), steps=STEPS[:2], breakdown=Breakdown.DAY)
    assert _units(queries.funnel(warehouse, request)) == {("2026-11-21", 1): 1, ("2026-11-21", 2): 1}
    by_source = FunnelRequest(start=DAY, end=DAY + timedelta(days=2), steps=STEPS[:2], breakdown=Breakdown.SOURCE)
    assert _units(queries.funnel(warehouse, by_source)) == {("web", 1): 1, ("web", 2): 1}


def test_tool_is_the_counted_paths_tool(warehouse: Warehouse) -> None:
    image, no_step = _image(), _image()
    insert_events(
        warehouse,
        [
            # A first entry that stops at a brush click; the entry 2 h later converts with segmentation.
            event("image_uploaded", "2026-11-20 08:00:00.000", input_id=image),
            event("tool_selected", "2026-11-20 08:01:00.000", input_id=image, tool_name="brush"),
            event("image_uploaded", "2026-11-20 10:00:00.000", input_id=image),
            event("tool_selected", "2026-11-20 10:01:00.000", input_id=image, tool_name="segmentation"),
            event("inference_requested", "2026-11-20 10:02:00.000", input_id=image, inference_type="inpainting"),
            event("image_saved", "2026-11-20 10:03:00.000", input_id=image),
            # Two clicks at one millisecond: the smallest name.
            event("image_uploaded", "2026-11-20 12:00:00.000", input_id=no_step),
            event("tool_selected", "2026-11-20 12:00:01.000", input_id=no_step, tool_name="rectangle"),
            event("tool_selected", "2026-11-20 12:00:01.000", input_id=no_step, tool_name="brush"),
        ],
    )
    request = FunnelRequest(start=DAY, end=DAY + timedelta(days=1), steps=STEPS, breakdown=Breakdown.TOOL)
    assert _units(queries.funnel(warehouse, request)) == {
        ("brush", 1): 1, ("brush", 2): 1, ("brush", 3): 0, ("brush", 4): 0,
        ("segmentation", 1): 1, ("segmentation", 2): 1, ("segmentation", 3): 1, ("segmentation", 4): 1,
    }  # fmt: skip
    # tool_selected not a step: the first click at or after the entry, within the window.
    without = FunnelRequest(
        start=DAY, end=DAY + timedelta(days=1), steps=("image_uploaded", "image_saved"), breakdown=Breakdown.TOOL
    )
    assert _units(queries.funnel(warehouse, without)) == {
        ("brush", 1): 1, ("brush", 2): 0, ("segmentation", 1): 1, ("segmentation", 2): 1,
    }  # fmt: skip


def test_the_excluded_steps_rows_give_no_value_and_exclude_the_unit(warehouse: Warehouse) -> None:
    kept, excluded = _image(), _image()
    insert_events(
        warehouse,
        [
            event("image_uploaded", "2026-11-20 10:00:00.000", input_id=kept),
            event("tool_selected", "2026-11-20 10:01:00.000", input_id=kept, tool_name="brush"),
            event("image_uploaded", "2026-11-20 11:00:00.000", input_id=excluded),
            event("tool_selected", "2026-11-20 11:01:00.000", input_id=excluded, tool_name="brush"),
            # After `to` but inside to + window: the exclusion still applies.
            event("score_submitted", "2026-11-21 00:10:00.000", input_id=excluded),
        ],
    )
    request = FunnelRequest(
        start=DAY, end=DAY + timedelta(days=1), steps=STEPS[:2], breakdown=Breakdown.TOOL, exclude="score_submitted"
    )
    assert _units(queries.funnel(warehouse, request)) == {("brush", 1): 1, ("brush", 2): 1}


# The variant breakdown: the arm from experiment_units, as the experiment analysis counts it.

EXPERIMENT = "segmentation_tool"


def _exposure(device: str, variant: str, at: str, **columns: Any) -> dict[str, Any]:
    return event(
        "experiment_exposure",
        at,
        anonymous_id=device,
        session_id=f"{device}:1",
        experiment_key=EXPERIMENT,
        variant=variant,
        experiments={EXPERIMENT: variant},
        **columns,
    )


def _journey(device: str, variant: str, at: str, *, saved: bool = True) -> list[dict[str, Any]]:
    """An image of the device uploaded at `at`, with a tool click and (optionally) a save."""
    image = _image()
    start = datetime.fromisoformat(at).replace(tzinfo=UTC)

    def step(kind: str, seconds: int, **columns: Any) -> dict[str, Any]:
        ts = f"{start + timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S}.000"
        common = {"anonymous_id": device, "session_id": f"{device}:1", "input_id": image}
        return event(kind, ts, experiments={EXPERIMENT: variant}, **common, **columns)

    rows = [step("image_uploaded", 0), step("tool_selected", 10, tool_name="brush")]
    if saved:
        rows += [step("inference_requested", 20), step("image_saved", 30)]
    return rows


def test_a_funnel_by_variant_counts_the_experiments_clean_units(warehouse: Warehouse) -> None:
    rows = [
        _exposure("d-control", "control", "2026-11-20 09:00:00.000"),
        *_journey("d-control", "control", "2026-11-20 10:00:00"),
        _exposure("d-control-2", "control", "2026-11-20 09:00:00.000"),
        *_journey("d-control-2", "control", "2026-11-20 10:00:00", saved=False),
        _exposure("d-treatment", "treatment", "2026-11-20 09:00:00.000"),
        *_journey("d-treatment", "treatment", "2026-11-20 10:00:00"),
        # Seen in both arms: left out of every arm.
        _exposure("d-both", "control", "2026-11-20 09:00:00.000"),
        _exposure("d-both", "treatment", "2026-11-20 09:30:00.000"),
        *_journey("d-both", "treatment", "2026-11-20 10:00:00"),
        # Uploaded before its exposure: that upload is no entry.
        *_journey("d-late", "treatment", "2026-11-20 08:00:00"),
        _exposure("d-late", "treatment", "2026-11-20 09:00:00.000"),
        # Never exposed: no arm.
        *_journey("d-never", "control", "2026-11-20 10:00:00"),
    ]
    insert_events(warehouse, rows)
    end = DAY + timedelta(days=1)
    clean = warehouse.query_rows(
        f"SELECT anonymous_id, variant, contaminated FROM experiment_units({EXPERIMENT_RANGE_SQL})",
        {"experiment": EXPERIMENT, "from": DAY, "to": end},
    )
    clean_per_arm: dict[str, int] = {}
    for unit in clean:
        if not unit["contaminated"]:
            clean_per_arm[unit["variant"]] = clean_per_arm.get(unit["variant"], 0) + 1
    assert {unit["anonymous_id"] for unit in clean if unit["contaminated"]} == {"d-both"}

    for unit in (Unit.DEVICE, Unit.IMAGE, Unit.SESSION):
        for mode in FunnelMode:
            request = FunnelRequest(
                start=DAY, end=end, steps=STEPS, unit=unit, mode=mode, breakdown=Breakdown.VARIANT,
                experiment=EXPERIMENT,
            )  # fmt: skip
            got = _units(queries.funnel(warehouse, request))
            assert got == {
                ("control", 1): 2, ("control", 2): 2, ("control", 3): 1, ("control", 4): 1,
                ("treatment", 1): 1, ("treatment", 2): 1, ("treatment", 3): 1, ("treatment", 4): 1,
            }, (unit, mode)  # fmt: skip
            for arm in ("control", "treatment"):
                assert got[(arm, 1)] <= clean_per_arm[arm]
            timing = _timed_units(queries.time_to_convert(warehouse, request))
            assert timing == {key: units for key, units in got.items() if key[1] > 1 and units}, unit


# The first received copy of a resent event counts, before and after a merge.


def test_each_funnel_query_answers_the_same_before_and_after_a_merge(warehouse: Warehouse) -> None:
    early, late = _image(), _image()

    def copies(image: str, first_at: str, resent_at: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """A save whose first copy is stamped first_at and whose resend (received 12:05) resent_at."""
        first = event("image_saved", first_at, input_id=image, client_ts="2026-11-20 10:01:00.000")
        first["received_at"] = first["enriched_at"] = max(first_at, "2026-11-20 10:01:00.000")
        resend = {**first, "event_ts": resent_at, "received_at": "2026-11-20 12:05:00.000"}
        resend["enriched_at"] = resend["received_at"]
        return first, resend

    # early: the first copy is in the window, the resend (no sent_at, stamped on arrival) is not.
    # late: the first copy came at 12:00 without sent_at; the resend's sent_at puts it at 10:01.
    # The first received copy counts: early saved, late not.
    early_first, early_resend = copies(early, "2026-11-20 10:01:00.000", "2026-11-20 12:05:00.000")
    late_first, late_resend = copies(late, "2026-11-20 12:00:00.000", "2026-11-20 10:01:00.000")
    rows = [
        event(kind, at, input_id=image)
        for image in (early, late)
        for kind, at in (("image_uploaded", "2026-11-20 10:00:00.000"), ("tool_selected", "2026-11-20 10:00:30.000"))
    ]
    insert_events(warehouse, [*rows, early_first, late_first])
    insert_events(warehouse, [early_resend, late_resend])  # another part: only FINAL collapses it before a merge

    end = DAY + timedelta(days=1)
    steps = ("image_uploaded", "tool_selected", "image_saved")

    def answers() -> list[Any]:
        out: list[Any] = []
        for mode in FunnelMode:
            request = FunnelRequest(start=DAY, end=end, steps=steps, window_s=300, mode=mode)
            out.append(_units(queries.funnel(warehouse, request)))
        request = FunnelRequest(start=DAY, end=end, steps=steps, window_s=300)
        out.append([(row["step"], row["units"], row["mean_s"]) for row in queries.time_to_convert(warehouse, request)])
        out.append([(str(row["day"]), row["saved"]) for row in queries.daily_conversion(warehouse, DAY, end, 300)])
        return out

    before = answers()
    warehouse.command("OPTIMIZE TABLE events FINAL")
    after = answers()
    assert before == after
    assert before[0] == {("all", 1): 2, ("all", 2): 2, ("all", 3): 1}
    assert before[2] == [(2, 2, 30.0), (3, 1, 30.0)]


# One definition: the per-unit SQL is the view funnel_units, which the three funnel files call alike.


def _statement(name: str) -> list[str]:
    return [line for line in queries.load(name).splitlines() if not line.lstrip().startswith("--")]


def _view_call(name: str) -> str:
    """The funnel_units(...) call of a query, whitespace collapsed."""
    text = " ".join(" ".join(_statement(name)).split())
    assert text.count("funnel_units(") == 1, name
    call = text[text.index("funnel_units(") :]
    return call[: call.index(")") + 1]


def test_time_to_convert_and_the_funnels_share_one_per_unit_view() -> None:
    funnel = _view_call("funnel")
    assert _view_call("funnel_strict") == funnel
    assert _view_call("time_to_convert") == funnel.replace("mode = {mode:String}", "mode = 'ordered'")
    assert _statement("funnel_strict") == _statement("funnel")
    assert not any("windowFunnel" in line for name in ("funnel", "time_to_convert") for line in _statement(name))
