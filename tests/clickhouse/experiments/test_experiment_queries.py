"""The experiment's named queries on hand-built events whose answer is known: pre-period events and
task times over the lookback, inference results with their status, each unit's dimensions, the
contaminated units and why (the same set as experiment_units' flag), and recent traffic as units."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clickhouse.backend import Warehouse
from clickhouse.experiments.warehouse import (
    CONTAMINATED_QUERY,
    fetch_frames,
    fetch_traffic_frames,
    query_parameters,
    query_text,
)
from funnelstream.experiments.definitions import Experiment
from ops.journeys import JourneySpec, journeys, warehouse_rows
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_warehouse import experiment_warehouse

pytestmark = pytest.mark.integration
KEY = "segmentation_tool"
T0 = datetime(2026, 11, 10, tzinfo=UTC)
CHROME = {"browser": "Chrome", "os": "Windows", "device": "Other", "source": "web"}


class Rows:
    """Events as a tracker would send them: each carries its unit's arm in the experiments map
    unless a row names another one."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.arm: dict[str, str] = {}

    def expose(self, unit: str, arm: str, at: datetime, **columns: Any) -> None:
        self.arm.setdefault(unit, arm)
        self.rows.append(
            {"event_type": "experiment_exposure", "anonymous_id": unit, "event_ts": at, "experiment_key": KEY}
            | {"variant": arm, "experiments": {KEY: arm}}
            | columns
        )

    def event(self, kind: str, unit: str, at: datetime, **columns: Any) -> None:
        arm = self.arm.get(unit)
        self.rows.append(
            {"event_type": kind, "anonymous_id": unit, "event_ts": at, "experiments": {KEY: arm} if arm else {}}
            | columns
        )

    def image(
        self, unit: str, image: str, at: datetime, task_s: float, status: str = "succeeded", **columns: Any
    ) -> None:
        """Upload, tool click, inference request and result, save ``task_s`` after the click, score."""
        steps: tuple[tuple[str, float, dict[str, Any]], ...] = (
            ("image_uploaded", 0.0, {}),
            ("tool_selected", 10.0, {}),
            ("inference_requested", 12.0, {}),
            ("inference_completed", 13.0, {"status": status}),
            ("image_saved", 10.0 + task_s, {}),
            ("score_submitted", 15.0 + task_s, {"score": 4.0}),
        )
        for kind, offset, extra in steps:
            self.event(kind, unit, at + timedelta(seconds=offset), input_id=image, **(columns | extra))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


@pytest.fixture
def warehouse(chdb_path: Path) -> Iterator[Warehouse]:
    with experiment_warehouse(chdb_path) as wh:
        yield wh


def scenario() -> Rows:
    rows = Rows()
    # u1: a clean control unit with a pre-period (one image 2 days before, one 20 days before) and a post one.
    rows.expose("u1", "control", T0, **CHROME)
    rows.image("u1", "i-old", T0 - timedelta(days=20), 30.0, **CHROME)
    rows.image("u1", "i-pre", T0 - timedelta(days=2), 60.0, status="failed", **CHROME)
    rows.image("u1", "i-post", T0 + timedelta(minutes=5), 45.0, **CHROME)
    # u2: exposed by the collector (no user agent, source 'experiments'); its client is Safari on iOS.
    rows.expose("u2", "treatment", T0 + timedelta(hours=1), source="experiments")
    rows.image("u2", "i-u2", T0 + timedelta(hours=2), 50.0, browser="Safari", os="iOS", device="iPhone", source="ios")
    # u3: exposed to both arms; u4: an event after its exposure names the other arm.
    rows.expose("u3", "control", T0)
    rows.expose("u3", "treatment", T0 + timedelta(hours=1))
    rows.expose("u4", "control", T0)
    rows.event("image_uploaded", "u4", T0 + timedelta(minutes=1), experiments={KEY: "treatment"}, input_id="i-u4")
    # u5 and u6: one person in two arms; u7 and u8: one person in one arm (clean).
    rows.expose("u5", "control", T0, user_id="p1")
    rows.expose("u6", "treatment", T0, user_id="p1")
    rows.expose("u7", "control", T0, user_id="p2")
    rows.expose("u8", "control", T0, user_id="p2")
    # u9: a forced exposure only, not a unit; u10: another arm named only before its exposure (clean).
    rows.expose("u9", "treatment", T0, properties={"assignment_source": "forced"})
    rows.event("image_uploaded", "u10", T0 - timedelta(hours=1), experiments={KEY: "treatment"}, input_id="i-u10")
    rows.expose("u10", "control", T0)
    # never: funnel events, no exposure.
    rows.image("never", "i-never", T0, 20.0)
    return rows


def load(warehouse: Warehouse, frame: pd.DataFrame) -> None:
    warehouse.insert_arrow("events", warehouse_rows(frame, KEY))


def test_post_and_pre_period_events_and_task_times(warehouse: Warehouse, experiment: Experiment) -> None:
    load(warehouse, scenario().frame())
    frames = fetch_frames(warehouse, experiment)
    clean = {"u1", "u2", "u7", "u8", "u10"}
    assert set(frames.units.loc[~frames.units["contaminated"].astype(bool), "anonymous_id"]) == clean
    # Post: inference results come with their status.
    u1 = frames.events[frames.events["anonymous_id"] == "u1"]
    assert u1["event_type"].tolist().count("inference_completed") == 1
    assert u1.loc[u1["event_type"] == "inference_completed", "status"].tolist() == ["succeeded"]
    assert u1.loc[u1["event_type"] != "inference_completed", "status"].isna().all()
    # Pre: u1's image of 2 days before (not the one of 20 days before) and u10's upload of 1 hour before.
    assert frames.pre_events["anonymous_id"].value_counts().to_dict() == {"u1": 6, "u10": 1}
    assert set(frames.pre_events["variant"]) == {"control"}
    assert frames.pre_events.loc[frames.pre_events["event_type"] == "inference_completed", "status"].tolist() == [
        "failed"
    ]
    assert (frames.pre_events["event_ts"] < pd.Timestamp(T0)).all()
    assert list(frames.pre_events.columns) == list(frames.events.columns)
    assert frames.pre_durations[["anonymous_id", "diff_second"]].values.tolist() == [["u1", 60.0]]
    assert list(frames.pre_durations.columns) == list(frames.durations.columns)
    assert sorted(frames.durations["diff_second"]) == [45.0, 50.0]
    # A 30-day lookback reaches the image of 20 days before too; a 1-day one reaches nothing.
    longer = fetch_frames(warehouse, make_experiment(cuped={"lookback_days": 30}))
    assert sorted(longer.pre_durations["diff_second"]) == [30.0, 60.0]
    shorter = fetch_frames(warehouse, make_experiment(cuped={"lookback_days": 1}))
    assert set(shorter.pre_events["anonymous_id"]) == {"u10"} and shorter.pre_durations.empty
    # Without CUPED the pre-period is not read.
    off = fetch_frames(warehouse, make_experiment(cuped={"enabled": False}))
    assert off.pre_events.empty and off.pre_durations.empty and len(off.events) == len(frames.events)


def test_dimensions_of_each_unit_s_first_exposure(warehouse: Warehouse, experiment: Experiment) -> None:
    load(warehouse, scenario().frame())
    dimensions = fetch_frames(warehouse, experiment).dimensions.set_index("anonymous_id")
    assert set(dimensions.index) == {"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u10"}
    assert dimensions.loc["u1"].to_dict() == CHROME
    assert dimensions.loc["u2"].to_dict() == {"browser": "Safari", "os": "iOS", "device": "iPhone", "source": "ios"}
    assert dimensions.loc["u5"].to_dict() == dict.fromkeys(CHROME, "unknown")


def test_contaminated_units_and_why(warehouse: Warehouse, experiment: Experiment) -> None:
    load(warehouse, scenario().frame())
    frames = fetch_frames(warehouse, experiment)
    got = {
        row.anonymous_id: (row.reason, list(row.variants), list(row.user_ids))
        for row in frames.contaminated.itertuples()
    }
    both = ["control", "treatment"]
    assert got == {
        "u3": ("device", both, []),
        "u4": ("device", both, []),
        "u5": ("user", both, ["p1"]),
        "u6": ("user", both, ["p1"]),
    }
    flagged = set(frames.units.loc[frames.units["contaminated"].astype(bool), "anonymous_id"])
    assert flagged == set(got)


def test_the_contaminated_units_are_the_view_s_on_a_simulation(warehouse: Warehouse, experiment: Experiment) -> None:
    spec = JourneySpec(units=1500, contaminated_share=0.03, login_rate=0.4, second_device_rate=0.3)
    events = journeys(spec, 17)
    # Some people log in on a device of the other arm too: their units are contaminated by user.
    arm = events.dropna(subset=["variant"]).drop_duplicates("anonymous_id").set_index("anonymous_id")["variant"]
    rng = np.random.default_rng(4)
    treated = arm.index[arm == "treatment"].to_numpy()
    control = arm.index[arm == "control"].to_numpy()
    shared = {str(t): f"shared{i}" for i, t in enumerate(rng.choice(treated, 30, replace=False))}
    shared |= {str(c): f"shared{i}" for i, c in enumerate(rng.choice(control, 30, replace=False))}
    events["user_id"] = [
        shared.get(unit, user) for unit, user in zip(events["anonymous_id"], events["user_id"], strict=True)
    ]
    load(warehouse, events)
    frames = fetch_frames(warehouse, experiment)
    flagged = set(frames.units.loc[frames.units["contaminated"].astype(bool), "anonymous_id"])
    assert set(frames.contaminated["anonymous_id"]) == flagged
    reasons = frames.contaminated["reason"].value_counts()
    assert reasons["device"] > 20 and reasons["user"] > 20
    assert all(len(v) == 2 for v in frames.contaminated["variants"])
    assert {str(u) for u in shared} <= flagged


def test_contaminated_query_takes_the_same_parameters(warehouse: Warehouse, experiment: Experiment) -> None:
    empty = warehouse.query_df(query_text(CONTAMINATED_QUERY), query_parameters(experiment))
    assert list(empty.columns) == ["anonymous_id", "reason", "variants", "user_ids"] and empty.empty


def test_recent_traffic_is_one_arm_of_units(warehouse: Warehouse) -> None:
    load(warehouse, scenario().frame())
    start, end = T0 - timedelta(days=3), T0 + timedelta(days=1)
    frames = fetch_traffic_frames(warehouse, start, end, control_key="control")
    # Every device with a funnel step in the window, exposed or not; u1's image of 20 days ago is out.
    assert set(frames.units["anonymous_id"]) == {"u1", "u2", "u4", "u10", "never"}
    assert set(frames.units["variant"]) == {"control"} and not frames.units["contaminated"].any()
    first = frames.units.set_index("anonymous_id")["first_exposure_at"]
    assert first["u1"] == pd.Timestamp(T0 - timedelta(days=2))
    assert set(frames.events["anonymous_id"]) == set(frames.units["anonymous_id"])
    assert (frames.events["event_ts"] >= pd.Timestamp(start)).all()
    assert "inference_completed" in set(frames.events["event_type"])
    assert sorted(frames.durations["diff_second"]) == [20.0, 45.0, 50.0, 60.0]
    assert fetch_traffic_frames(warehouse, T0 + timedelta(days=5), T0 + timedelta(days=6)).units.empty


def test_a_simulated_run_s_clients_pre_period_and_failures_come_back(
    warehouse: Warehouse, experiment: Experiment
) -> None:
    spec = JourneySpec(units=800, pre_period_images=1.0, completions=True, failure_rate=0.2, pre_exposure_share=0.0)
    events = journeys(spec, 23)
    load(warehouse, events)
    frames = fetch_frames(warehouse, experiment)
    client = events.drop_duplicates("anonymous_id").set_index("anonymous_id")[["browser", "os", "device", "source"]]
    got = frames.dimensions.set_index("anonymous_id")
    assert len(got) == 800
    assert got.astype(str).equals(client.loc[got.index].astype(str))
    before = events[events["input_id"].fillna("").str.contains("-b")]
    completed = before[before["event_type"] == "inference_completed"]
    pre_completed = frames.pre_events[frames.pre_events["event_type"] == "inference_completed"]
    assert len(pre_completed) == len(completed) > 100
    assert (pre_completed["status"] == "failed").sum() == (completed["status"] == "failed").sum()
    post = frames.events[frames.events["event_type"] == "inference_completed"]
    assert 0.15 < (post["status"] == "failed").mean() < 0.25
