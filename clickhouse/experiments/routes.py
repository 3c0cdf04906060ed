"""The warehouse's experiment routes: the definitions, and each experiment's results.

A factory, so the warehouse process binds its own way of computing results from its events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException

from clickhouse.experiments.analysis import ExperimentResults
from funnelstream.errors import TransientError
from funnelstream.experiments.definitions import Definitions, Experiment
from funnelstream.experiments.errors import UnknownExperimentError, WarehouseUnavailableError

RETRY_AFTER_S = 2


ResultsFactory = Callable[[Experiment, bool], Any]
"""(experiment, sequential) → ExperimentResults; the warehouse binds its own events loader."""


def results_router(definitions: Callable[[], Definitions], results: ResultsFactory) -> APIRouter:
    """``GET /v1/experiments`` and ``GET /v1/experiments/{key}/results``.

    Each comparison of the results says what decided it: ``decision`` (``fixed_horizon``, or
    ``sequential`` with ``?sequential=true``) is the basis of its top-level ``lift_ci_*``, ``ci_*``,
    ``p_value`` and ``significant``; in sequential mode the fixed-horizon numbers are kept apart in
    ``fixed_horizon``. Each metric carries its ``role`` (primary, guardrail, secondary); secondary
    comparisons carry ``p_value_adjusted``, on which their ``significant`` is decided.
    """
    router = APIRouter(tags=["experiments"])

    @router.get("/v1/experiments")
    def list_experiments() -> dict[str, Any]:
        current = definitions()
        return {"version": current.version, "experiments": [e.model_dump(mode="json") for e in current.experiments]}

    @router.get("/v1/experiments/{key}/results", response_model=ExperimentResults)
    def get_results(key: str, sequential: bool = False) -> ExperimentResults:
        try:
            experiment = definitions().get(key)
        except UnknownExperimentError as exc:
            raise HTTPException(404, detail=str(exc)) from None
        try:
            outcome: ExperimentResults = results(experiment, sequential)
        except (WarehouseUnavailableError, TransientError) as exc:
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        return outcome

    return router
