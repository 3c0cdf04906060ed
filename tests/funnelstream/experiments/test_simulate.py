from __future__ import annotations

from datetime import UTC, datetime

from funnelstream.contract import parse_event
from funnelstream.experiments.simulate import SimulationSpec, client_events, simulate


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
