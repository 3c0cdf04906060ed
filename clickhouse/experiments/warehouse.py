"""An experiment's frames from ClickHouse, and its results from them.

Named queries (``experiment_units``, ``experiment_events``, ``experiment_task_durations``, their
``experiment_pre_*`` lookbacks, ``experiment_unit_dimensions``, ``experiment_contaminated_units``,
and ``traffic_*`` for planning without an experiment) compute everything the analysis reads; through
the warehouse API's process when it owns the embedded data, directly otherwise. Invariant: no unit,
event or duration reaches :mod:`clickhouse.experiments.analysis` except through these queries.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pandas as pd
import pyarrow as pa

from clickhouse.backend import open_warehouse
from clickhouse.client import send_retrying
from clickhouse.errors import QueryError
from clickhouse.experiments.analysis import AnalysisConfig, ExperimentFrames, ExperimentResults, analyze
from clickhouse.experiments.results import PlanResult
from clickhouse.migrate import migrate
from clickhouse.queries import QUERIES_DIR
from funnelstream.experiments.definitions import Experiment
from funnelstream.experiments.errors import UnknownExperimentError, WarehouseUnavailableError
from funnelstream.settings import ClickHouseConfig

UNITS_QUERY = "experiment_units"
EVENTS_QUERY = "experiment_events"
DURATIONS_QUERY = "experiment_task_durations"
PRE_EVENTS_QUERY = "experiment_pre_events"
PRE_DURATIONS_QUERY = "experiment_pre_task_durations"
DIMENSIONS_QUERY = "experiment_unit_dimensions"
CONTAMINATED_QUERY = "experiment_contaminated_units"
TRAFFIC_UNITS_QUERY = "traffic_units"
TRAFFIC_EVENTS_QUERY = "traffic_events"
TRAFFIC_DURATIONS_QUERY = "traffic_task_durations"
T = TypeVar("T")
# Open-ended windows still need bounds in the query; these cover any plausible event time.
EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class QueriesFrames(Protocol):
    def query_df(self, sql: str, parameters: Any = None, settings: Any = None) -> pd.DataFrame: ...


def query_text(name: str = EVENTS_QUERY) -> str:
    return (QUERIES_DIR / f"{name}.sql").read_text()


def window(experiment: Experiment) -> tuple[datetime, datetime]:
    """The analysed window: the current phase, from its start to the experiment's end."""
    return experiment.analysis_start or EARLIEST, experiment.end or LATEST


def query_parameters(experiment: Experiment) -> dict[str, Any]:
    """The parameters every experiment query takes; ``lookback_days`` is read by the pre-period ones."""
    start, end = window(experiment)
    return {
        "experiment_key": experiment.key,
        "from": start,
        "to": end,
        "lookback_days": experiment.cuped.lookback_days,
    }


def fetch_frames(warehouse: QueriesFrames, experiment: Experiment) -> ExperimentFrames:
    """Every frame of the experiment (units, post and pre-period events and task durations, unit
    dimensions, contaminated units) through any object with ``query_df`` (a
    ``clickhouse.backend`` Warehouse, or the warehouse API's analyst reader). Without CUPED the
    pre-period queries are not run: their frames stay empty, which the analysis reads as no covariate."""
    parameters = query_parameters(experiment)

    def run(name: str) -> pd.DataFrame:
        return warehouse.query_df(query_text(name), parameters)

    pre: dict[str, pd.DataFrame] = {}
    if experiment.cuped.enabled:
        pre = {"pre_events": run(PRE_EVENTS_QUERY), "pre_durations": run(PRE_DURATIONS_QUERY)}
    return ExperimentFrames(
        units=run(UNITS_QUERY),
        events=run(EVENTS_QUERY),
        durations=run(DURATIONS_QUERY),
        dimensions=run(DIMENSIONS_QUERY),
        contaminated=run(CONTAMINATED_QUERY),
        **pre,
    )


def fetch_traffic_frames(
    warehouse: QueriesFrames, start: datetime, end: datetime, control_key: str = "control"
) -> ExperimentFrames:
    """Recent traffic as one arm for planning: every device with a funnel event in [start, end) is
    a clean unit of ``control_key``, first exposed at its first such event; its events and task
    durations from then on are the post period (``traffic_*`` queries). No pre-period, no dimensions."""
    parameters = {"from": start, "to": end, "control_key": control_key}
    return ExperimentFrames(
        units=warehouse.query_df(query_text(TRAFFIC_UNITS_QUERY), parameters),
        events=warehouse.query_df(query_text(TRAFFIC_EVENTS_QUERY), parameters),
        durations=warehouse.query_df(query_text(TRAFFIC_DURATIONS_QUERY), parameters),
    )


def fetch_events(warehouse: QueriesFrames, experiment: Experiment) -> ExperimentFrames:
    """The former name of :func:`fetch_frames`: ``analyze(fetch_events(reader, e), e, config)`` still
    works for a caller not yet moved to :func:`analyze_warehouse`."""
    return fetch_frames(warehouse, experiment)


def analyze_warehouse(
    warehouse: QueriesFrames, experiment: Experiment, config: AnalysisConfig | None = None
) -> ExperimentResults:
    """The experiment's results from an open warehouse (or reader): the one entry point of every caller."""
    return analyze(fetch_frames(warehouse, experiment), experiment, config)


def _get_via_api(api_url: str, read_key: str, key: str, what: str, params: dict[str, Any], timeout_s: float) -> Any:
    """``GET /v1/experiments/{key}/{what}`` of the warehouse process, which owns the embedded data while it runs."""
    url = f"{api_url.rstrip('/')}/v1/experiments/{key}/{what}"
    headers = {"Authorization": f"Bearer {read_key}"}
    try:
        response = send_retrying(lambda: httpx.get(url, params=params, headers=headers, timeout=timeout_s))
    except httpx.HTTPError as exc:
        raise WarehouseUnavailableError(f"{url}: {exc}") from None
    if response.status_code == 404:
        raise UnknownExperimentError(key, [])
    if response.status_code >= 400:
        raise WarehouseUnavailableError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    return response.json()


def fetch_results_via_api(
    api_url: str, read_key: str, key: str, sequential: bool, timeout_s: float = 120.0
) -> ExperimentResults:
    """Results computed by the warehouse process."""
    body = _get_via_api(api_url, read_key, key, "results", {"sequential": sequential}, timeout_s)
    return ExperimentResults.model_validate(body)


def fetch_plan_via_api(
    api_url: str, read_key: str, key: str, *, mde: float, power: float, days: float, timeout_s: float = 120.0
) -> PlanResult:
    """A plan computed by the warehouse process."""
    body = _get_via_api(api_url, read_key, key, "plan", {"mde": mde, "power": power, "days": days}, timeout_s)
    return PlanResult.model_validate(body)


def load_frames(experiment: Experiment, clickhouse: ClickHouseConfig) -> ExperimentFrames:
    """Open the warehouse named by the configuration, run the queries, close it."""
    return with_configured_warehouse(clickhouse, lambda warehouse: fetch_frames(warehouse, experiment))


def with_configured_warehouse(clickhouse: ClickHouseConfig, run: Callable[[QueriesFrames], T]) -> T:
    """``run`` on the warehouse named by the configuration, opened for it and closed after; a
    warehouse that cannot be opened or queried is a :class:`WarehouseUnavailableError`."""
    try:
        warehouse = open_warehouse(clickhouse)
    except Exception as exc:
        raise WarehouseUnavailableError(f"cannot open the warehouse: {exc}") from None
    try:
        return run(warehouse)
    except QueryError as exc:
        raise WarehouseUnavailableError(f"experiment query failed: {exc}") from None
    finally:
        warehouse.close()


def analyze_export(table: pa.Table, experiment: Experiment, config: AnalysisConfig | None = None) -> ExperimentResults:
    """Results from rows of the ``events`` table (an export; missing columns take the table's
    defaults), loaded into a scratch embedded warehouse and read through the same named queries
    (the definitions live in SQL, so there is no in-memory shortcut)."""
    with tempfile.TemporaryDirectory(prefix="funnelstream-export-") as scratch:
        warehouse = open_warehouse(ClickHouseConfig(chdb_path=Path(scratch) / "chdb"))
        try:
            migrate(warehouse)
            warehouse.insert_arrow("events", table)
            return analyze_warehouse(warehouse, experiment, config)
        finally:
            warehouse.close()


def results_from(warehouse: QueriesFrames, config: AnalysisConfig) -> Callable[[Experiment, bool], ExperimentResults]:
    """A results factory for :func:`clickhouse.experiments.routes.results_router` over an open warehouse."""

    def results(experiment: Experiment, sequential: bool) -> ExperimentResults:
        return analyze_warehouse(warehouse, experiment, replace(config, sequential=sequential))

    return results
