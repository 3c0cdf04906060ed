"""The named query against a real embedded ClickHouse (chdb) with the project's migrations applied."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from funnelstream.contract import EnrichedEvent
from funnelstream.experiments.analysis import AnalysisConfig, analyze
from funnelstream.experiments.definitions import Experiment
from funnelstream.experiments.simulate import SimulationSpec, simulate
from funnelstream.experiments.warehouse import fetch_events, load_events
from funnelstream.settings import ClickHouseConfig

from .conftest import make_experiment

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


def test_the_experiment_query_feeds_the_same_answer_as_memory(warehouse: Any, experiment: Experiment) -> None:
    events, truth = simulate(
        SimulationSpec(units=1200, task_time_factor=0.7, save_conversion_lift=0.05, contaminated_share=0.01), 21
    )
    # An unrelated device that was never exposed must not come back from the query.
    stray = events[events["event_type"] == "image_uploaded"].iloc[[0]].assign(anonymous_id="never-exposed")
    payloads = enriched_payloads(pd.concat([events, stray]), experiment.key)
    messages = [warehouse.loader.Message("events.enriched", 0, i, None, p) for i, p in enumerate(payloads)]
    table, rejected = warehouse.loader.decode_events(messages)
    assert not rejected
    warehouse.insert_arrow("events", table)
    # A re-sent copy of the first event collapses (FINAL) and does not double-count.
    warehouse.insert_arrow("events", table.slice(0, 1))

    fetched = fetch_events(warehouse, experiment)
    assert len(fetched) == len(events)
    assert "never-exposed" not in set(fetched["anonymous_id"])

    config = AnalysisConfig(bootstrap_resamples=0)
    from_warehouse = analyze(fetched, experiment, config)
    in_memory = analyze(events, experiment, config)
    assert from_warehouse.exposures == in_memory.exposures
    # The experiments map on later events reveals no extra contamination: it agrees with the exposures.
    assert from_warehouse.contamination == in_memory.contamination
    wh_save = next(m for m in from_warehouse.conversion if m.name == "conversion_save").comparisons[0]
    mem_save = next(m for m in in_memory.conversion if m.name == "conversion_save").comparisons[0]
    assert wh_save.difference == pytest.approx(mem_save.difference)
    assert from_warehouse.task_duration is not None and in_memory.task_duration is not None
    wh_task = from_warehouse.task_duration.mean.comparisons[0]
    assert wh_task.relative_lift == pytest.approx(in_memory.task_duration.mean.comparisons[0].relative_lift, abs=1e-4)
    assert wh_task.lift_ci_low is not None and wh_task.lift_ci_high is not None
    assert wh_task.lift_ci_low < truth.task_time_relative_lift < wh_task.lift_ci_high


def test_load_events_opens_and_closes_the_configured_warehouse(tmp_path: Path) -> None:
    backend = pytest.importorskip("clickhouse.backend")
    migrate = pytest.importorskip("clickhouse.migrate")
    config = ClickHouseConfig(chdb_path=tmp_path / "chdb")
    wh = backend.open_warehouse(config)
    migrate.migrate(wh)
    wh.close()
    frame = load_events(make_experiment(), config)
    assert frame.empty
