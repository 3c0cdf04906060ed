"""FastAPI routers: assignment for the collector, results for the warehouse API.

Both are factories so each host app decides what they depend on: the collector passes its
producer as the exposure sink, the warehouse passes its query function as the events loader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict

from funnelstream.errors import FunnelstreamError, TransientError
from funnelstream.experiments.assignment import Assigner, ExposureLogger
from funnelstream.experiments.definitions import Definitions, Experiment
from funnelstream.experiments.errors import UnknownExperimentError, WarehouseUnavailableError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2
UnitId = Annotated[str, Query(min_length=1, max_length=128)]


class AssignmentOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    experiment_key: str
    variant: str
    phase: int
    source: str


class AssignmentsOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    anonymous_id: str
    definitions_version: int
    variants: dict[str, str]
    """experiment key → variant: what the frontend puts in every event's ``experiments`` map."""
    assignments: list[AssignmentOut]


def assignments_router(
    definitions: Callable[[], Definitions], assigner: Assigner, exposures: ExposureLogger
) -> APIRouter:
    """``GET /v1/assignments``: the running experiments' variants for a device, exposure logged once."""
    router = APIRouter(tags=["experiments"])

    @router.get("/v1/assignments", response_model=AssignmentsOut)
    async def get_assignments(anonymous_id: UnitId, user_id: UnitId | None = None) -> AssignmentsOut:
        anonymous_id, user_id = anonymous_id.strip(), (user_id.strip() or None) if user_id else None
        if not anonymous_id:
            raise HTTPException(422, detail=[{"loc": ["query", "anonymous_id"], "msg": "must not be blank"}])
        current = definitions()
        # The store may be a file; keep its I/O off the event loop.
        assigned = await asyncio.to_thread(assigner.assign_running, anonymous_id, user_id, None, current)
        entered = [a for a in assigned if a.variant is not None]
        try:
            for assignment in entered:
                await exposures.log(assignment, anonymous_id, user_id)
        except FunnelstreamError as exc:
            # The broker did not take the exposure (DeliveryError, TransientError, the collector's
            # Unavailable): answering a variant now would let the unit act on it unrecorded.
            log.warning("exposure not durable; assignment refused", extra={"reason": str(exc)})
            retry_after = getattr(exc, "retry_after_s", None) or RETRY_AFTER_S
            raise HTTPException(
                503, detail="exposure could not be recorded; retry", headers={"Retry-After": str(retry_after)}
            ) from None
        return AssignmentsOut(
            anonymous_id=anonymous_id,
            definitions_version=current.version,
            variants={a.experiment_key: a.variant for a in entered if a.variant is not None},
            assignments=[
                AssignmentOut(experiment_key=a.experiment_key, variant=a.variant, phase=a.phase, source=str(a.source))
                for a in entered
                if a.variant is not None
            ],
        )

    return router


ResultsFactory = Callable[[Experiment, bool], Any]
"""(experiment, sequential) → ExperimentResults; the warehouse binds its own events loader."""


def results_router(definitions: Callable[[], Definitions], results: ResultsFactory) -> APIRouter:
    """``GET /v1/experiments`` and ``GET /v1/experiments/{key}/results``."""
    from funnelstream.experiments.analysis import ExperimentResults

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
