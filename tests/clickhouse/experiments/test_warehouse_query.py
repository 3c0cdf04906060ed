"""The experiment's named queries against a real embedded ClickHouse (chdb) with the project's
migrations applied: rows that went through the warehouse loader give the same frames and results as
the simulation's direct insert, and the frames are exactly experiment_units' clean units."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clickhouse.experiments.analysis import AnalysisConfig
from clickhouse.experiments.warehouse import analyze_warehouse, fetch_frames, load_frames, query_parameters
from funnelstream.contract import EnrichedEvent
from funnelstream.experiments.definitions import Experiment
from funnelstream.settings import ClickHouseConfig
from ops.journeys import JourneySpec, simulate, warehouse_rows
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_warehouse import analyze_events

pytestmark = pytest.mark.integration
RECEIVED = datetime(2026, 11, 6, tzinfo=UTC)


def enriched_payloads(events: pd.DataFrame, experiment_key: str) -> list[bytes]:
    """The simulated rows as the stream processors would write them to events.enriched."""
    assigned = events.dropna(subset=["variant"]).drop_duplicates("anonymous_id").set_index("anonymous_id")["variant"]
    payloads = []
    for row in events.itertuples(index=False):
        variant = row.variant if isinstance(row.variant, str) else None
        seen_in = variant or assigned.get(row.anonymous_id)
        ts = row.event_ts.floor("ms").to_pydatetime()
        fields: dict[str, Any] = {
            "event_id": uuid.uuid4(),
            "event_type": row.event_type,
            "schema_version": 1,
            "anonymous_id": row.anonymous_id,
            "input_id": uuid.uuid5(uuid.NAMESPACE_URL, row.input_id) if isinstance(row.input_id, str) else None,
            "session_id": f"{row.anonymous_id}-s",
            "client_ts": ts,
            "received_at": RECEIVED,
            "event_ts": ts,
            "funnel_step": int(row.funnel_step),
            "score": int(row.score) if row.score == row.score else None,
            "experiment_key": row.experiment_key if isinstance(row.experiment_key, str) else None,
            "variant": variant,
            "experiments": {experiment_key: seen_in} if seen_in else {},
            "enriched_at": RECEIVED,
        }
        payloads.append(EnrichedEvent(**fields).model_dump_json().encode())
    return payloads


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[Any]:
    backend = pytest.importorskip("clickhouse.backend")
    migrate = pytest.importorskip("clickhouse.migrate")
    loader = pytest.importorskip("clickhouse.loader")
    config = ClickHouseConfig(chdb_path=tmp_path / "chdb")
    wh = backend.open_warehouse(config)
    migrate.migrate(wh)
    wh.loader = loader
    yield wh
    wh.close()


def test_loaded_events_give_the_same_frames_as_the_simulation_s_insert(
    warehouse: Any, experiment: Experiment, tmp_path: Path
) -> None:
    events, truth = simulate(
        JourneySpec(units=1200, task_time_factor=0.7, save_conversion_lift=0.05, contaminated_share=0.01), 21
    )
    # An unrelated device that was never exposed must not come back from the queries.
    stray = events[events["event_type"] == "image_uploaded"].iloc[[0]].assign(anonymous_id="never-exposed")
    payloads = enriched_payloads(pd.concat([events, stray]), experiment.key)
    messages = [warehouse.loader.Message("events.enriched", 0, i, None, p) for i, p in enumerate(payloads)]
    table, rejected = warehouse.loader.decode_events(messages)
    assert not rejected
    warehouse.insert_arrow("events", table)
    # A re-sent copy of the first event collapses (FINAL) and does not double-count.
    warehouse.insert_arrow("events", table.slice(0, 1))

    frames = fetch_frames(warehouse, experiment)
    assert "never-exposed" not in set(frames.units["anonymous_id"]) | set(frames.events["anonymous_id"])
    exposures = events[events["event_type"] == "experiment_exposure"]
    assert len(frames.units) == exposures["anonymous_id"].nunique() == 1200
    # Every event and duration the analysis reads is a clean unit's, and only those units.
    clean = set(frames.units.loc[~frames.units["contaminated"].astype(bool), "anonymous_id"])
    assert set(frames.events["anonymous_id"]) <= clean and set(frames.durations["anonymous_id"]) <= clean

    config = AnalysisConfig(bootstrap_resamples=0)
    loaded = analyze_warehouse(warehouse, experiment, config)
    inserted = analyze_events(tmp_path / "chdb", events, experiment, config)  # chdb: one path per process
    assert loaded.exposures == inserted.exposures
    assert loaded.contamination == inserted.contamination
    assert loaded.contamination.units_in_several_variants == int(
        (exposures.groupby("anonymous_id")["variant"].nunique() > 1).sum()
    )
    assert loaded.conversion == inserted.conversion and loaded.score == inserted.score
    assert loaded.task_duration == inserted.task_duration
    assert loaded.task_duration is not None
    task = loaded.task_duration.mean.comparisons[0]
    assert task.lift_ci_low is not None and task.lift_ci_high is not None
    assert task.lift_ci_low < truth.task_time_relative_lift < task.lift_ci_high


def test_the_units_are_the_view_s_clean_units(warehouse: Any, experiment: Experiment) -> None:
    events, _ = simulate(JourneySpec(units=400, contaminated_share=0.05), 5)
    warehouse.insert_arrow("events", warehouse_rows(events, experiment.key))
    view = warehouse.query_df(
        "SELECT anonymous_id, variant FROM experiment_units(experiment_key = {experiment_key:String}, "
        "range_start = {from:DateTime64(3, 'UTC')}, range_end = {to:DateTime64(3, 'UTC')}) WHERE contaminated = 0",
        query_parameters(experiment),
    )
    results = analyze_warehouse(warehouse, experiment, AnalysisConfig(bootstrap_resamples=0))
    counts = view["variant"].value_counts()
    assert {e.variant: e.units for e in results.exposures} == {
        v: int(counts.get(v, 0)) for v in ("control", "treatment")
    }
    save = next(m for m in results.conversion if m.name == "conversion_save")
    assert sum(arm.units for arm in save.arms) == len(view)


def test_load_frames_opens_and_closes_the_configured_warehouse(tmp_path: Path) -> None:
    backend = pytest.importorskip("clickhouse.backend")
    migrate = pytest.importorskip("clickhouse.migrate")
    config = ClickHouseConfig(chdb_path=tmp_path / "chdb")
    wh = backend.open_warehouse(config)
    migrate.migrate(wh)
    wh.close()
    frames = load_frames(make_experiment(), config)
    assert frames.units.empty and frames.events.empty and frames.durations.empty
