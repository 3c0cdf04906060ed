"""The warehouse's experiment routes: the definitions, each experiment's results and its plan.

Factories, so the warehouse process binds its own way of computing results and plans from its
events. Invariant: no input gives a 5xx: a bad parameter is a 422 naming it, an unknown key a 404;
only an unreachable warehouse is a 503 (with Retry-After).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query

from clickhouse.experiments.analysis import ExperimentResults
from clickhouse.experiments.results import PlanResult
from funnelstream.errors import TransientError
from funnelstream.experiments.definitions import Definitions, Experiment
from funnelstream.experiments.errors import UnknownExperimentError, WarehouseUnavailableError

RETRY_AFTER_S = 2
# The bounds keep every figure finite: an MDE of 1e-300 or a day of 1e-300 would ask for
# infinitely many units.
MDE_BOUNDS = (0.001, 10.0)
DAYS_BOUNDS = (1.0, 365.0)

ResultsFactory = Callable[[Experiment, bool], Any]
"""(experiment, sequential) → ExperimentResults; the warehouse binds its own events loader."""
PlanFactory = Callable[[Experiment, float, float, float], Any]
"""(experiment, mde, power, days) → PlanResult; the warehouse binds its own events loader."""

T = TypeVar("T")

Mde = Annotated[
    float,
    Query(
        ge=MDE_BOUNDS[0],
        lt=MDE_BOUNDS[1],
        description="Minimum detectable effect: the relative change of each metric to detect (0.05 = 5 %).",
    ),
]
Power = Annotated[
    float, Query(gt=0.5, lt=1, description="Probability of detecting the effect when it is there (0.8 = 80 %).")
]
Days = Annotated[
    float,
    Query(
        ge=DAYS_BOUNDS[0],
        le=DAYS_BOUNDS[1],
        description="Planned duration in days: the MDE reachable in that time is given for each metric.",
    ),
]


def results_router(
    definitions: Callable[[], Definitions], results: ResultsFactory, plan: PlanFactory | None = None
) -> APIRouter:
    """``GET /v1/experiments``, ``GET /v1/experiments/{key}/results`` and, with a plan factory,
    ``GET /v1/experiments/{key}/plan``.

    Each comparison of the results says what decided it: ``decision`` (``fixed_horizon``, or
    ``sequential`` with ``?sequential=true``) is the basis of its top-level ``lift_ci_*``, ``ci_*``,
    ``p_value`` and ``significant``; in sequential mode the fixed-horizon numbers are kept apart in
    ``fixed_horizon``. Each metric carries its ``role`` (primary, guardrail, secondary); secondary
    comparisons carry ``p_value_adjusted``, on which their ``significant`` is decided.
    """
    router = APIRouter(tags=["experiments"])

    def experiment_of(key: str) -> Experiment:
        try:
            return definitions().get(key)
        except UnknownExperimentError as exc:
            raise HTTPException(404, detail=str(exc)) from None

    def computed(compute: Callable[[], T]) -> T:
        try:
            return compute()
        except (WarehouseUnavailableError, TransientError) as exc:
            raise HTTPException(503, detail=str(exc), headers={"Retry-After": str(RETRY_AFTER_S)}) from None

    @router.get("/v1/experiments")
    def list_experiments() -> dict[str, Any]:
        current = definitions()
        return {"version": current.version, "experiments": [e.model_dump(mode="json") for e in current.experiments]}

    @router.get(
        "/v1/experiments/{key}/results",
        response_model=ExperimentResults,
        summary="An experiment's results",
        description="Exposures, sample-ratio and contamination checks, every metric per arm with its comparisons "
        "(frequentist, CUPED-adjusted where there is pre-period data, Bayesian), guardrail checks, lift over time, "
        "health by dimension, progress towards the planned sample, and the alerts.",
    )
    def get_results(
        key: str,
        sequential: Annotated[
            bool, Query(description="Confidence sequences, valid however often the results are looked at.")
        ] = False,
    ) -> ExperimentResults:
        experiment = experiment_of(key)
        outcome: ExperimentResults = computed(lambda: results(experiment, sequential))
        return outcome

    if plan is not None:
        planner = plan

        @router.get(
            "/v1/experiments/{key}/plan",
            response_model=PlanResult,
            summary="Units and days an effect needs",
            description="For each metric of the experiment: the units and days needed to detect a relative change "
            "`mde` with `power`, and the MDE reachable in `days`, from the variance and traffic of the experiment's "
            "units so far, or of recent traffic before it has any.",
        )
        def get_plan(key: str, mde: Mde, power: Power = 0.8, days: Days = 14.0) -> PlanResult:
            experiment = experiment_of(key)
            outcome: PlanResult = computed(lambda: planner(experiment, mde, power, days))
            return outcome

    return router
