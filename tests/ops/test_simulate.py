from __future__ import annotations

import zlib
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from funnelstream.contract import parse_event
from ops.simulate import SimulationConfig, simulate

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def half_and_half(anonymous_id: str, user_id: str | None) -> str:
    unit = user_id or anonymous_id
    return "treatment" if zlib.crc32(unit.encode()) % 2 else "control"


def _frame(config: SimulationConfig) -> pd.DataFrame:
    rows = []
    for journey in simulate(config, half_and_half, now=NOW):
        for event in journey.events:
            rows.append({**event, "variant": journey.variant})
    frame = pd.DataFrame(rows)
    frame["client_ts"] = pd.to_datetime(frame["client_ts"])
    return frame


def test_every_simulated_event_follows_the_contract() -> None:
    for journey in simulate(SimulationConfig(users=200), half_and_half, now=NOW):
        for event in journey.events:
            parse_event({**event, "sent_at": NOW.isoformat()})


def test_the_same_seed_gives_the_same_events() -> None:
    first = [e["event_id"] for j in simulate(SimulationConfig(users=50), half_and_half, now=NOW) for e in j.events]
    again = [e["event_id"] for j in simulate(SimulationConfig(users=50), half_and_half, now=NOW) for e in j.events]
    assert first == again
    assert len(set(first)) == len(first)


def test_a_user_on_two_devices_stays_in_one_arm() -> None:
    arms: dict[str, set[str]] = {}
    for journey in simulate(SimulationConfig(users=2000, second_device_rate=0.5), half_and_half, now=NOW):
        if journey.user_id:
            arms.setdefault(journey.user_id, set()).add(journey.variant)
    assert arms and all(len(variants) == 1 for variants in arms.values())


def test_planted_effects_are_in_the_data() -> None:
    frame = _frame(SimulationConfig(users=6000, seed=11))
    per_image = frame.pivot_table(
        index=["variant", "input_id"], columns="event_type", values="client_ts", aggfunc="min"
    ).reset_index()
    saved = per_image.dropna(subset=["tool_selected", "image_saved"])
    task_s = (saved["image_saved"] - saved["tool_selected"]).dt.total_seconds()
    medians = task_s.groupby(saved["variant"]).median()
    assert np.isclose(medians["treatment"] / medians["control"], 0.70, atol=0.06)

    requested = per_image.dropna(subset=["inference_requested"])
    save_rate = requested["image_saved"].notna().groupby(requested["variant"]).mean()
    assert np.isclose(save_rate["treatment"] - save_rate["control"], 0.05, atol=0.025)
