"""Simulated experiments in a real migrated chdb database, analysed through the real named queries.

Runs go in as one Arrow insert (:func:`ops.journeys.warehouse_rows`); many runs share a database,
each with its own devices, and one query of each kind serves them all before the rows are split by
run. Invariant: nothing here computes a metric, a unit or a duration; it writes rows, runs the named
queries (:func:`clickhouse.experiments.warehouse.fetch_frames`) and splits their rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from clickhouse.backend import Warehouse, open_warehouse
from clickhouse.experiments.analysis import AnalysisConfig, ExperimentFrames, ExperimentResults, analyze
from clickhouse.experiments.warehouse import analyze_warehouse, fetch_frames
from clickhouse.migrate import migrate
from funnelstream.experiments.definitions import Experiment
from funnelstream.settings import ClickHouseConfig
from ops.journeys import warehouse_rows

RUNS_PER_DATABASE = 50
"""Runs loaded into one database and read by one query of each kind."""


def open_experiment_warehouse(path: Path) -> Warehouse:
    """A fresh, migrated database on the chdb data path ``path`` (one path per process at a time)."""
    config = ClickHouseConfig(chdb_path=path, database=f"fs_exp_{uuid.uuid4().hex[:10]}")
    warehouse = open_warehouse(config)
    migrate(warehouse)
    return warehouse


def drop_and_close(warehouse: Warehouse) -> None:
    warehouse.command(f"DROP DATABASE IF EXISTS {warehouse.database}")
    warehouse.close()


@contextmanager
def experiment_warehouse(path: Path) -> Iterator[Warehouse]:
    warehouse = open_experiment_warehouse(path)
    try:
        yield warehouse
    finally:
        drop_and_close(warehouse)


def load(warehouse: Warehouse, runs: Sequence[pd.DataFrame], experiment_key: str) -> None:
    """One insert of every run's events (``simulate()`` frames of experiment ``experiment_key``)."""
    tables = [warehouse_rows(events, experiment_key, salt) for salt, events in enumerate(runs)]
    warehouse.insert_arrow("events", pa.concat_tables(tables, promote_options="default"))


def _split(frames: ExperimentFrames, runs: Sequence[pd.DataFrame]) -> list[ExperimentFrames]:
    """Each run's rows of the frames, by the run its device belongs to; runs must not share a device."""
    devices = [pd.unique(events["anonymous_id"].to_numpy(object)) for events in runs]
    owners = pd.Index(np.concatenate(devices))
    if owners.has_duplicates:
        raise ValueError("runs share devices; give each run its own anonymous_ids (simulate() seeds do)")
    run_of = np.repeat(np.arange(len(runs)), [len(d) for d in devices])
    parts: dict[str, list[pd.DataFrame]] = {}
    for name in (f.name for f in fields(ExperimentFrames)):
        frame: pd.DataFrame = getattr(frames, name)
        run = run_of[owners.get_indexer(frame["anonymous_id"].to_numpy(object))]
        order = np.argsort(run, kind="stable")
        bounds = np.searchsorted(run[order], np.arange(1, len(runs)))
        parts[name] = [frame.iloc[rows].reset_index(drop=True) for rows in np.split(order, bounds)]
    return [ExperimentFrames(**{name: pieces[i] for name, pieces in parts.items()}) for i in range(len(runs))]


def analyze_runs(
    path: Path,
    runs: Sequence[pd.DataFrame],
    experiment: Experiment,
    config: AnalysisConfig | None = None,
    per_database: int = RUNS_PER_DATABASE,
) -> list[ExperimentResults]:
    """Each run's results through the real queries.

    Runs of one experiment are independent when they share no device and no user: every unit's
    arm, contamination, events and durations depend on its own events only. So ``per_database`` runs
    are loaded together, each named query runs once over them, and its rows are split by run before
    :func:`clickhouse.experiments.analysis.analyze`, which sees exactly one run's frames.
    """
    results: list[ExperimentResults] = []
    for start in range(0, len(runs), per_database):
        chunk = runs[start : start + per_database]
        with experiment_warehouse(path) as warehouse:
            load(warehouse, chunk, experiment.key)
            frames = fetch_frames(warehouse, experiment)
        results += [analyze(part, experiment, config) for part in _split(frames, chunk)]
    return results


def analyze_events(
    path: Path, events: pd.DataFrame, experiment: Experiment, config: AnalysisConfig | None = None
) -> ExperimentResults:
    """One simulated (or hand-made) frame, loaded alone and analysed through the real queries."""
    with experiment_warehouse(path) as warehouse:
        load(warehouse, [events], experiment.key)
        return analyze_warehouse(warehouse, experiment, config)
