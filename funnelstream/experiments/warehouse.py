"""Fetching an experiment's events from ClickHouse and turning them into results.

The named query ``clickhouse/queries/experiment_events.sql`` returns the rows the analysis needs.
It runs through the warehouse API when ``funnelstream warehouse serve`` owns the embedded data (one
process per chdb path, DESIGN §6), and directly through ``clickhouse.backend`` otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from funnelstream.experiments.analysis import AnalysisConfig, ExperimentResults, analyze
from funnelstream.experiments.definitions import Experiment
from funnelstream.experiments.errors import UnknownExperimentError, WarehouseUnavailableError
from funnelstream.settings import PROJECT_ROOT, ClickHouseConfig

QUERY_NAME = "experiment_events"
QUERY_PATH = PROJECT_ROOT / "clickhouse" / "queries" / f"{QUERY_NAME}.sql"
# Open-ended windows still need bounds in the query; these cover any plausible event time.
EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class QueriesFrames(Protocol):
    def query_df(self, sql: str, parameters: Any = None, settings: Any = None) -> pd.DataFrame: ...


def query_text(path: Path = QUERY_PATH) -> str:
    return path.read_text()


def query_parameters(experiment: Experiment) -> dict[str, Any]:
    return {
        "experiment_key": experiment.key,
        "from": experiment.analysis_start or EARLIEST,
        "to": experiment.end or LATEST,
    }


def fetch_events(warehouse: QueriesFrames, experiment: Experiment) -> pd.DataFrame:
    """The experiment's events through any object with ``query_df`` (a ``clickhouse.backend`` Warehouse)."""
    return warehouse.query_df(query_text(), query_parameters(experiment))


def fetch_results_via_api(
    api_url: str, read_key: str, key: str, sequential: bool, timeout_s: float = 120.0
) -> ExperimentResults:
    """Results computed by the warehouse process, which owns the embedded data while it runs."""
    import httpx

    from clickhouse.client import send_retrying

    url = f"{api_url.rstrip('/')}/v1/experiments/{key}/results"
    headers = {"Authorization": f"Bearer {read_key}"}
    try:
        response = send_retrying(
            lambda: httpx.get(url, params={"sequential": sequential}, headers=headers, timeout=timeout_s)
        )
    except httpx.HTTPError as exc:
        raise WarehouseUnavailableError(f"{url}: {exc}") from None
    if response.status_code == 404:
        raise UnknownExperimentError(key, [])
    if response.status_code >= 400:
        raise WarehouseUnavailableError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    return ExperimentResults.model_validate(response.json())


def load_events(experiment: Experiment, clickhouse: ClickHouseConfig) -> pd.DataFrame:
    """Open the warehouse named by the configuration, run the query, close it."""
    try:
        from clickhouse.backend import open_warehouse
        from clickhouse.errors import QueryError
    except ImportError as exc:
        raise WarehouseUnavailableError(f"the clickhouse package is not installed: {exc}") from None
    try:
        warehouse = open_warehouse(clickhouse)
    except Exception as exc:
        raise WarehouseUnavailableError(f"cannot open the warehouse: {exc}") from None
    try:
        return fetch_events(warehouse, experiment)
    except QueryError as exc:
        raise WarehouseUnavailableError(f"experiment query failed: {exc}") from None
    finally:
        warehouse.close()


def results_from(warehouse: QueriesFrames, config: AnalysisConfig) -> Any:
    """A results factory for :func:`funnelstream.experiments.http.results_router` over an open warehouse."""
    from dataclasses import replace

    def results(experiment: Experiment, sequential: bool) -> ExperimentResults:
        return analyze(fetch_events(warehouse, experiment), experiment, replace(config, sequential=sequential))

    return results
