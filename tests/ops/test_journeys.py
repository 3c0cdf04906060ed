"""The journey generator: its events follow the contract, seeds repeat, planted effects are in the
data, and each adapter keeps what the frame says."""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pytest

from funnelstream.blocks import partition_for, split_block
from funnelstream.contract import InferenceCompleted, parse_event
from ingest.pipeline import event_bytes
from ops.journeys import (
    CLIENTS,
    DIMENSIONS,
    PLANTED_SAVE_LIFT,
    PLANTED_TASK_TIME_FACTOR,
    PRE_PERIOD_DAYS,
    SDK_BATCH_EVENTS,
    JourneySpec,
    clickstream,
    collector_payloads,
    devices,
    journeys,
    live_spec,
    raw_blocks,
    raw_stream,
    simulate,
    warehouse_rows,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SENT = datetime(2026, 11, 10, tzinfo=UTC)


def half_and_half(anonymous_id: str, user_id: str | None) -> str:
    unit = user_id or anonymous_id
    return "treatment" if zlib.crc32(unit.encode()) % 2 else "control"


def _live(users: int, seed: int = 7) -> pd.DataFrame:
    return journeys(live_spec(users, seed, end=NOW, window=timedelta(hours=6)), seed, assign=half_and_half)


def test_every_event_follows_the_contract() -> None:
    for event in collector_payloads(_live(200)):
        parse_event({**event, "sent_at": NOW.isoformat()})


def test_the_same_seed_gives_the_same_events() -> None:
    first = [e["event_id"] for e in collector_payloads(_live(50))]
    again = [e["event_id"] for e in collector_payloads(_live(50))]
    assert first == again
    assert len(set(first)) == len(first)
    assert first != [e["event_id"] for e in collector_payloads(_live(50, seed=8))]


def test_a_user_on_two_devices_stays_in_one_arm() -> None:
    spec = JourneySpec(units=2000, login_rate=0.3, second_device_rate=0.5)
    frame = journeys(spec, 3)
    arms = frame.dropna(subset=["user_id", "variant"]).groupby("user_id")["variant"].nunique()
    assert len(arms) > 100 and (arms == 1).all()
    assert [device for device, _ in devices(spec, 3)] == list(pd.unique(frame["anonymous_id"]))


def test_the_demo_plants_its_effects() -> None:
    frame = _live(6000, seed=11)
    arm = frame.dropna(subset=["variant"]).drop_duplicates("anonymous_id").set_index("anonymous_id")["variant"]
    frame["arm"] = frame["anonymous_id"].map(arm)
    per_image = frame.dropna(subset=["input_id"]).pivot_table(
        index=["arm", "input_id"], columns="event_type", values="event_ts", aggfunc="min"
    )
    per_image = per_image.reset_index()
    saved = per_image.dropna(subset=["tool_selected", "image_saved"])
    task_s = (saved["image_saved"] - saved["tool_selected"]).dt.total_seconds()
    medians = task_s.groupby(saved["arm"]).median()
    assert np.isclose(medians["treatment"] / medians["control"], PLANTED_TASK_TIME_FACTOR, atol=0.06)
    requested = per_image.dropna(subset=["inference_requested"])
    save_rate = requested["image_saved"].notna().groupby(requested["arm"]).mean()
    assert np.isclose(save_rate["treatment"] - save_rate["control"], PLANTED_SAVE_LIFT, atol=0.025)


def test_collector_payloads_carry_the_units_arm() -> None:
    events, _ = simulate(JourneySpec(units=60), 5)
    posted = collector_payloads(events, exposures=False, sent_at=SENT)
    assert len(posted) == int((events["event_type"] != "experiment_exposure").sum())
    exposed = events.dropna(subset=["variant"]).set_index("anonymous_id")["variant"]
    for event in map(parse_event, posted):
        assert event.experiments == {"segmentation_tool": exposed[event.anonymous_id]}
    assert collector_payloads(events, exposures=False, sent_at=SENT) == posted


def test_arms_can_come_from_the_collector() -> None:
    assigned = {f"device-{i}": "treatment" if i % 3 == 0 else "control" for i in range(90)}
    events, _ = simulate(JourneySpec(units=90, pre_exposure_share=0.0), 5, assigned=assigned)
    exposures = events[events["event_type"] == "experiment_exposure"].set_index("anonymous_id")["variant"]
    assert exposures.to_dict() == assigned


def test_warehouse_rows_are_the_frame_as_events_columns() -> None:
    events, _ = simulate(JourneySpec(units=50, contaminated_share=0.1), 6)
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


def test_the_clickstream_has_what_the_queries_must_survive() -> None:
    data = clickstream(images=300, devices=80, seed=11)
    assert len(data.deliveries) > len(data.events) * 1.05
    assert len({e.event_id for e in data.deliveries}) == len(data.events)
    assert any(event.is_late for event in data.events)
    times = [event.event_ts for event in data.deliveries]
    assert times != sorted(times)
    per_image: dict[object, list[str]] = {}
    for event in data.events:
        per_image.setdefault(event.input_id, []).append(event.event_type)
    assert any(kinds.count("tool_selected") > 1 for kinds in per_image.values())  # re-entries
    assert any("image_uploaded" not in kinds for kinds in per_image.values())  # a lost upload
    assert {e.model_version for e in data.events if e.model_version} == {"lama-1.0", "lama-1.1"}


def test_the_raw_stream_is_keyed_by_device_with_resends_and_unknown_tools() -> None:
    stream = raw_stream(3000, 400, seed=3, start=NOW)
    assert len(stream.events) == 3000
    values = [orjson.loads(value) for _, value in stream.messages]
    assert stream.duplicates == len(values) - len({v["event_id"] for v in values}) > 0
    assert all(key.decode() == value["anonymous_id"] for (key, _), value in zip(stream.messages, values, strict=True))
    assert {e.get("tool_id") for e in stream.events} >= {1, 2, 3, 42}
    arrival = [v["event_ts"] for v in values]
    assert arrival != sorted(arrival)
    assert raw_stream(3000, 400, seed=3, start=NOW).messages == stream.messages


def test_two_seeds_of_a_preset_share_no_event_id() -> None:
    first = {e["event_id"] for e in raw_stream(300, 50, seed=1).events}
    second = {e["event_id"] for e in raw_stream(300, 50, seed=2).events}
    assert not first & second
    assert not {e.event_id for e in clickstream(seed=1).events} & {e.event_id for e in clickstream(seed=2).events}


def _exposures(frame: pd.DataFrame) -> pd.DataFrame:
    exposed = frame[frame["event_type"] == "experiment_exposure"].sort_values("event_ts")
    return exposed.drop_duplicates("anonymous_id").set_index("anonymous_id")


def _task_s_per_unit(frame: pd.DataFrame) -> pd.Series:
    """Each device's mean task time (first tool click to save) over its images in ``frame``."""
    steps = frame.dropna(subset=["input_id"]).pivot_table(
        index=["anonymous_id", "input_id"], columns="event_type", values="event_ts", aggfunc="min"
    )
    saved = steps.dropna(subset=["tool_selected", "image_saved"])
    task_s = (saved["image_saved"] - saved["tool_selected"]).dt.total_seconds()
    return task_s.groupby(level="anonymous_id").mean()


def test_every_event_of_a_device_carries_its_client() -> None:
    frame = journeys(JourneySpec(units=4000, login_rate=0.3, second_device_rate=0.3), 9)
    per_device = frame.groupby("anonymous_id")[list(DIMENSIONS)].nunique()
    assert (per_device == 1).all().all()
    browsers = frame.drop_duplicates("anonymous_id")["browser"].value_counts(normalize=True)
    expected = pd.Series([c[4] for c in CLIENTS], index=[c[0] for c in CLIENTS]).groupby(level=0).sum()
    assert np.allclose(browsers.reindex(expected.index), expected, atol=0.03)


def test_new_knobs_move_no_other_draw() -> None:
    base = JourneySpec(units=300, completions=True, contaminated_share=0.05)
    plain = journeys(base, 4)
    richer = journeys(replace(base, pre_period_images=1.0, failure_rate=0.2, srm_in=("browser", "Safari", 0.5)), 4)
    # The pre-period's images are new rows and a few exposures are lost; every other row is the same
    # but the status of a failed result.
    post = richer[~richer["input_id"].fillna("").str.contains("-b")]
    same = ["event_type", "anonymous_id", "input_id", "event_ts", "score", "job_id", *DIMENSIONS]
    exposure = "experiment_exposure"
    plain_rows = plain.loc[plain["event_type"] != exposure, same].reset_index(drop=True)
    pd.testing.assert_frame_equal(plain_rows, post.loc[post["event_type"] != exposure, same].reset_index(drop=True))
    assert set(_exposures(richer).index) < set(_exposures(plain).index)


def test_pre_period_images_precede_exposure_and_predict_the_unit_s_task_time() -> None:
    spec = JourneySpec(
        units=3000, pre_period_images=2.0, image_save_rate=0.8, unit_speed_sigma=0.8, task_sigma=0.3, completions=True
    )
    frame = journeys(spec, 12)
    exposed_at = _exposures(frame)["event_ts"]
    before = frame["input_id"].fillna("").str.contains("-b")
    at = frame["event_ts"] - frame["anonymous_id"].map(exposed_at)
    assert before.sum() > 3000
    assert (at[before] < pd.Timedelta(0)).all()
    saved = before & (frame["event_type"] == "image_saved")
    assert (at[saved] > -pd.Timedelta(days=PRE_PERIOD_DAYS)).all()
    pre, post = _task_s_per_unit(frame[before]), _task_s_per_unit(frame[~before])
    both = pd.concat([np.log(pre), np.log(post)], axis=1, join="inner")
    assert len(both) > 1000
    assert both.corr().iloc[0, 1] > 0.5


def test_a_save_propensity_makes_pre_and_post_saves_correlate() -> None:
    spec = JourneySpec(units=4000, pre_period_images=3.0, images_per_unit_extra=2.0, save_propensity_sigma=2.0)
    frame = journeys(spec, 13)
    before = frame["input_id"].fillna("").str.contains("-b")
    saves = frame["event_type"] == "image_saved"
    units = frame["anonymous_id"].unique()
    pre = frame[before & saves].groupby("anonymous_id").size().reindex(units, fill_value=0)
    post = frame[~before & saves].groupby("anonymous_id").size().reindex(units, fill_value=0)
    assert np.corrcoef(pre, post)[0, 1] > 0.3
    flat = journeys(replace(spec, save_propensity_sigma=0.0), 13)
    flat_before = flat["input_id"].fillna("").str.contains("-b")
    flat_saves = flat["event_type"] == "image_saved"
    pre0 = flat[flat_before & flat_saves].groupby("anonymous_id").size().reindex(units, fill_value=0)
    post0 = flat[~flat_before & flat_saves].groupby("anonymous_id").size().reindex(units, fill_value=0)
    assert abs(np.corrcoef(pre0, post0)[0, 1]) < 0.1


def test_inference_failures_are_planted_per_arm() -> None:
    spec = JourneySpec(units=6000, completions=True, failure_rate=0.05, failure_rate_lift=0.05)
    frame = journeys(spec, 14)
    frame["arm"] = frame["anonymous_id"].map(_exposures(frame)["variant"])
    done = frame[frame["event_type"] == "inference_completed"]
    assert set(done["status"]) == {"succeeded", "failed"}
    assert frame.loc[frame["event_type"] != "inference_completed", "status"].isna().all()
    rate = done["status"].eq("failed").groupby(done["arm"]).mean()
    assert np.isclose(rate["control"], 0.05, atol=0.01) and np.isclose(rate["treatment"], 0.10, atol=0.012)
    failed = [e for e in collector_payloads(frame.drop(columns="arm")) if e.get("status") == "failed"]
    parsed = [parse_event({**e, "sent_at": NOW.isoformat()}) for e in failed]
    assert parsed and all(isinstance(e, InferenceCompleted) and e.status == "failed" for e in parsed)
    with pytest.raises(ValueError, match="completions"):
        JourneySpec(failure_rate=0.1)


def test_a_broken_client_loses_treatment_exposures_in_one_value_only() -> None:
    spec = JourneySpec(units=20000, srm_in=("browser", "Safari", 0.4))
    frame = journeys(spec, 15)
    plain = journeys(replace(spec, srm_in=None), 15)
    counts = _exposures(frame).groupby(["browser", "variant"]).size().unstack()
    before = _exposures(plain).groupby(["browser", "variant"]).size().unstack()
    lost = 1 - counts / before
    assert np.isclose(lost.loc["Safari", "treatment"], 0.4, atol=0.06)
    assert (lost.drop(index="Safari") == 0).all().all() and lost.loc["Safari", "control"] == 0
    # The lost units' events are still sent: their devices are there, outside the experiment.
    assert frame["anonymous_id"].nunique() == plain["anonymous_id"].nunique()


def test_warehouse_rows_write_client_and_status() -> None:
    events = journeys(JourneySpec(units=40, completions=True, failure_rate=0.5), 16)
    table = warehouse_rows(events, "segmentation_tool")
    for column in (*DIMENSIONS, "status"):
        assert table.column(column).to_pylist() == [None if pd.isna(v) else v for v in events[column]]


def test_a_tool_s_users_save_at_its_factor_of_the_rate() -> None:
    spec = JourneySpec(units=6000, image_save_rate=0.6, control_tools=(1, 2), treatment_tools=(1, 2))
    frame = journeys(replace(spec, tool_save_factors=((2, 0.5),)), 17)
    tools = frame[frame["event_type"] == "tool_selected"].set_index("input_id")["tool_id"]
    asked = frame.loc[frame["event_type"] == "inference_requested", "input_id"]
    saved = set(frame.loc[frame["event_type"] == "image_saved", "input_id"])
    scored = set(frame.loc[frame["event_type"] == "score_submitted", "input_id"])
    rate = asked.isin(saved).groupby(asked.map(tools).to_numpy()).mean()
    assert np.isclose(rate[1], 0.6, atol=0.03) and np.isclose(rate[2], 0.3, atol=0.03)
    assert scored <= saved
    # Only saves and scores of the tool's images go; every other event is the plain spec's.
    plain = journeys(spec, 17)
    kept = ~plain["event_type"].isin(["image_saved", "score_submitted"])
    same = ["event_type", "anonymous_id", "input_id", "event_ts", "tool_id"]
    richer = frame[~frame["event_type"].isin(["image_saved", "score_submitted"])]
    pd.testing.assert_frame_equal(plain.loc[kept, same].reset_index(drop=True), richer[same].reset_index(drop=True))
    lost = set(plain.loc[plain["event_type"] == "image_saved", "input_id"]) - saved
    assert lost and {tools[image] for image in lost} == {2}
    with pytest.raises(ValueError, match="tool_save_factors"):
        JourneySpec(tool_save_factors=((2, 1.5),))


def test_raw_blocks_carry_every_message_in_the_collectors_bytes_and_keep_each_devices_order() -> None:
    stream = raw_stream(3000, 400, seed=3, start=NOW)
    blocks = raw_blocks(stream, partitions=4, sdk_share=0.5)
    documents = [(block.partition, line) for block in blocks for line in split_block(block.value)]
    assert len(documents) == len(stream.messages)
    assert any(block.count == SDK_BATCH_EVENTS // 4 or block.count > 50 for block in blocks)
    per_device: dict[str, list[str]] = {}
    for partition, line in documents:
        event = orjson.loads(line)
        assert partition_for(event["anonymous_id"].encode(), 4) == partition
        assert line == event_bytes(parse_event(event).__dict__)
        per_device.setdefault(event["anonymous_id"], []).append(event["event_id"])
    arrived: dict[str, list[str]] = {}
    for key, value in stream.messages:
        arrived.setdefault(key.decode(), []).append(orjson.loads(value)["event_id"])
    assert per_device == arrived
