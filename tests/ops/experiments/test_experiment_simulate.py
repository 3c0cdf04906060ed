from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from funnelstream.contract import parse_event
from ops.experiments.simulate import SimulationSpec, client_events, simulate, warehouse_rows


def test_client_events_follow_the_contract() -> None:
    events, _ = simulate(SimulationSpec(units=60), 5)
    posted = client_events(events, "segmentation_tool", sent_at=datetime(2026, 11, 10, tzinfo=UTC))
    funnel_rows = events[events["event_type"] != "experiment_exposure"]
    assert len(posted) == len(funnel_rows)
    parsed = [parse_event(event) for event in posted]
    exposed = events.dropna(subset=["variant"]).set_index("anonymous_id")["variant"]
    for event in parsed:
        assert event.experiments == {"segmentation_tool": exposed[event.anonymous_id]}
    assert client_events(events, "segmentation_tool", sent_at=datetime(2026, 11, 10, tzinfo=UTC)) == posted


def test_arms_can_come_from_the_collector() -> None:
    assigned = {f"device-{i}": "treatment" if i % 3 == 0 else "control" for i in range(90)}
    events, _ = simulate(SimulationSpec(units=90, pre_exposure_share=0.0), 5, assigned=assigned)
    exposures = events[events["event_type"] == "experiment_exposure"].set_index("anonymous_id")["variant"]
    assert exposures.to_dict() == assigned


def test_warehouse_rows_are_the_simulation_as_events_columns() -> None:
    events, _ = simulate(SimulationSpec(units=50, contaminated_share=0.1), 6)
    table = warehouse_rows(events, "segmentation_tool", salt=3)
    assert table.num_rows == len(events)
    assert len(set(table.column("event_id").to_pylist())) == len(events)
    images = events["input_id"].notna().to_numpy()
    assert table.column("input_id").null_count == int((~images).sum())
    # One image keeps one id across its steps; two images never share one.
    ids = pd.Series(table.column("input_id").to_pylist())[images]
    assert ids.nunique() == events.loc[images, "input_id"].nunique()
    # Each row names the arm of its unit's first exposure; an exposure, its own variant.
    arm = events[events["variant"].notna()].drop_duplicates("anonymous_id").set_index("anonymous_id")["variant"]
    maps = [dict(m) for m in table.column("experiments").to_pylist()]
    exposures = (events["event_type"] == "experiment_exposure").to_numpy()
    for row, mapped in zip(events.itertuples(index=False), maps, strict=True):
        expected = row.variant if row.event_type == "experiment_exposure" else arm[row.anonymous_id]
        assert mapped == {"segmentation_tool": expected}
    assert exposures.sum() > 50  # the contaminated units' second exposures are there too
