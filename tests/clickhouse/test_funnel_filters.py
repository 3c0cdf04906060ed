"""Funnel filters and the new breakdowns at their edges, on hand-made rows in real chdb.

What each test pins is a sentence of docs/analytics-definitions.md, "Funnels": a filter keeps the
events that carry its dimension with the chosen value and every event without it; a filter that
keeps everything changes nothing; size buckets split at exactly 1 MP and 4 MP; a variant filter
keeps only clean units of the experiment in that arm, from their first exposure on.
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
from clickhouse.queries import SIZE_BUCKETS, Breakdown, FunnelFilters, FunnelMode, FunnelRequest, size_bucket
from tests.helpers.event_rows import event, insert_events
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

DAY = datetime(2026, 11, 20, tzinfo=UTC)
STEPS = ("image_uploaded", "tool_selected", "image_saved")
EXPERIMENT = "segmentation_tool"


@pytest.fixture
def warehouse(shared_chdb_path: Path) -> Iterator[Warehouse]:
    opened, _ = open_test_warehouse("chdb", shared_chdb_path)
    yield opened
    drop_and_close(opened)


def _journey(
    at: str, *, owner: str = "device-1", tool: str = "brush", sides: tuple[int, int] = (800, 600), **client: Any
) -> list[dict[str, Any]]:
    """One image of device ``owner``: upload (with its sides), a tool click and a save, 10 s apart."""
    image = str(uuid.uuid4())
    start = datetime.fromisoformat(at).replace(tzinfo=UTC)

    def step(kind: str, seconds: int, **columns: Any) -> dict[str, Any]:
        ts = f"{start + timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S}.000"
        common = {"anonymous_id": owner, "session_id": f"{owner}:1", "input_id": image, **client}
        return event(kind, ts, **common, **columns)

    width, height = sides
    return [
        step("image_uploaded", 0, width=width, height=height),
        step("tool_selected", 10, tool_name=tool),
        step("image_saved", 20),
    ]


def _request(**fields: Any) -> FunnelRequest:
    return FunnelRequest(start=DAY, end=DAY + timedelta(days=1), steps=STEPS, window_s=3600, **fields)


def _counts(warehouse: Warehouse, request: FunnelRequest) -> dict[tuple[str, int], int]:
    return {(str(r["breakdown"]), int(r["step"])): int(r["units"]) for r in queries.funnel(warehouse, request)}


def test_a_filter_that_keeps_every_event_gives_the_unfiltered_answer(warehouse: Warehouse) -> None:
    insert_events(
        warehouse,
        _journey("2026-11-20 09:00:00", source="web", browser="Chrome")
        + _journey("2026-11-20 10:00:00", tool="rectangle", source="web", browser="Chrome"),
    )
    plain = _request()
    for filters in (FunnelFilters(source="web"), FunnelFilters(browser="Chrome"), FunnelFilters(os="Linux")):
        for mode in FunnelMode:
            assert _counts(warehouse, replace(plain, mode=mode, filters=filters)) == _counts(
                warehouse, replace(plain, mode=mode)
            ), (filters, mode)
    assert _counts(warehouse, plain) == {("all", 1): 2, ("all", 2): 2, ("all", 3): 2}


def test_a_tool_filter_keeps_that_tools_clicks_and_every_event_without_a_tool(warehouse: Warehouse) -> None:
    insert_events(
        warehouse,
        _journey("2026-11-20 09:00:00") + _journey("2026-11-20 10:00:00", tool="rectangle"),
    )
    brush = _request(filters=FunnelFilters(tool="brush"))
    # Both uploads enter (no tool on them); only the brush image reaches the tool step and beyond.
    assert _counts(warehouse, brush) == {("all", 1): 2, ("all", 2): 1, ("all", 3): 1}
    timing = queries.time_to_convert(warehouse, brush)
    assert [(row["step"], row["units"]) for row in timing] == [(2, 1), (3, 1)]
    assert _counts(warehouse, _request(filters=FunnelFilters(tool="absent"))) == {
        ("all", 1): 2,
        ("all", 2): 0,
        ("all", 3): 0,
    }


def test_size_buckets_split_at_exactly_one_and_four_megapixels(warehouse: Warehouse) -> None:
    sides = {(999, 1000): "small", (1000, 1000): "medium", (1999, 2000): "medium", (2000, 2000): "large"}
    rows: list[dict[str, Any]] = []
    for hour, side in enumerate(sides):
        rows += _journey(f"2026-11-20 {hour + 9:02d}:00:00", sides=side)
    insert_events(warehouse, rows)
    assert {side: size_bucket(*side) for side in sides} == sides
    assert [name for name, _, _ in SIZE_BUCKETS] == ["small", "medium", "large"]
    by_size = _counts(warehouse, _request(breakdown=Breakdown.SIZE))
    assert by_size == {
        ("large", 1): 1, ("large", 2): 1, ("large", 3): 1,
        ("medium", 1): 2, ("medium", 2): 2, ("medium", 3): 2,
        ("small", 1): 1, ("small", 2): 1, ("small", 3): 1,
    }  # fmt: skip
    for name in ("small", "medium", "large"):
        filtered = _counts(warehouse, _request(filters=FunnelFilters(size=name)))
        # The other uploads are filtered out, so their images never enter.
        assert filtered[("all", 1)] == by_size[(name, 1)], name


def test_browser_os_and_device_breakdowns_read_the_entry_event(warehouse: Warehouse) -> None:
    insert_events(
        warehouse,
        _journey("2026-11-20 09:00:00", browser="Chrome", os="Linux", device="Other")
        + _journey("2026-11-20 10:00:00", owner="device-2"),
    )
    for breakdown, value in ((Breakdown.BROWSER, "Chrome"), (Breakdown.OS, "Linux"), (Breakdown.DEVICE, "Other")):
        assert _counts(warehouse, _request(breakdown=breakdown)) == {
            (value, 1): 1, (value, 2): 1, (value, 3): 1,
            ("(none)", 1): 1, ("(none)", 2): 1, ("(none)", 3): 1,
        }, breakdown  # fmt: skip


def _exposure(device: str, variant: str, at: str) -> dict[str, Any]:
    return event(
        "experiment_exposure",
        at,
        anonymous_id=device,
        session_id=f"{device}:1",
        experiment_key=EXPERIMENT,
        variant=variant,
        experiments={EXPERIMENT: variant},
    )


def test_a_variant_filter_keeps_the_arms_clean_devices_from_their_first_exposure(warehouse: Warehouse) -> None:
    insert_events(
        warehouse,
        [
            _exposure("d-control", "control", "2026-11-20 08:00:00.000"),
            _exposure("d-treatment", "treatment", "2026-11-20 08:00:00.000"),
            _exposure("d-both", "control", "2026-11-20 08:00:00.000"),
            _exposure("d-both", "treatment", "2026-11-20 08:30:00.000"),
            _exposure("d-late", "control", "2026-11-20 12:00:00.000"),
            *_journey("2026-11-20 09:00:00", owner="d-control"),
            *_journey("2026-11-20 09:00:00", owner="d-treatment"),
            *_journey("2026-11-20 09:00:00", owner="d-both"),
            *_journey("2026-11-20 09:00:00", owner="d-late"),
        ],
    )
    control = _request(experiment=EXPERIMENT, filters=FunnelFilters(variant="control"))
    assert _counts(warehouse, control) == {("all", 1): 1, ("all", 2): 1, ("all", 3): 1}
    treatment = replace(control, filters=FunnelFilters(variant="treatment"))
    assert _counts(warehouse, treatment) == {("all", 1): 1, ("all", 2): 1, ("all", 3): 1}
    assert _counts(warehouse, _request()) == {("all", 1): 4, ("all", 2): 4, ("all", 3): 4}


def test_a_variant_filter_needs_an_experiment_and_a_size_a_known_bucket() -> None:
    with pytest.raises(ValueError, match=r"^experiment: required with a variant filter"):
        _request(filters=FunnelFilters(variant="control"))
    with pytest.raises(ValueError, match=r"^size: unknown size bucket 'huge'"):
        _request(filters=FunnelFilters(size="huge"))
