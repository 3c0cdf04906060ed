"""FastAPI routers: assignment for the collector, results for the warehouse API.

Both are factories so each host app decides what they depend on: the collector passes its
producer as the exposure sink and its access rules, the warehouse its query function as the
events loader. Assignment writes (exposure marks, sticky arms), so it is never served without an
:class:`AssignmentAccess`: the host refuses the request before anything is read or written, and
charges it the exposures it may write, which bounds the store's growth per key and per client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict

from funnelstream.errors import FunnelstreamError
from funnelstream.experiments.definitions import Definitions
from ingest.experiments.assignment import Assigner, ExposureLogger

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


class AssignmentAccess(Protocol):
    """The host's rules for who may ask for assignments; raising refuses with the host's own answer."""

    def admit(self, request: Request, cost: int) -> None:
        """Authenticate ``request`` and charge it ``cost`` exposures, before anything is read or written."""
        ...

    def check_user_binding(self, request: Request, user_id: str) -> None:
        """Refuse unless the caller may bind ``user_id`` to its device's arms (only senders the host
        trusts to have authenticated that user may; a browser could name anyone)."""
        ...

    def headers(self, request: Request) -> dict[str, str]:
        """Headers every answer carries (the host's CORS headers)."""
        ...


def assignments_router(
    definitions: Callable[[], Definitions], assigner: Assigner, exposures: ExposureLogger, access: AssignmentAccess
) -> APIRouter:
    """``GET /v1/assignments``: the running experiments' variants for a device, exposure logged once."""
    router = APIRouter(tags=["experiments"])

    def admitted(request: Request) -> None:
        # A dependency, so it runs before the query is validated: an unknown key learns nothing else.
        # The charge is the exposures the request may write, one per running experiment.
        access.admit(request, max(1, len(definitions().running())))

    @router.get("/v1/assignments", response_model=AssignmentsOut, dependencies=[Depends(admitted)])
    async def get_assignments(
        request: Request, response: Response, anonymous_id: UnitId, user_id: UnitId | None = None
    ) -> AssignmentsOut:
        anonymous_id, user_id = anonymous_id.strip(), (user_id.strip() or None) if user_id else None
        if not anonymous_id:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("query", "anonymous_id"), "msg": "must not be blank", "input": ""}]
            )
        if user_id is not None:
            access.check_user_binding(request, user_id)
        headers = access.headers(request)
        response.headers.update(headers)
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
                503,
                detail="exposure could not be recorded; retry",
                headers={**headers, "Retry-After": str(retry_after)},
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
