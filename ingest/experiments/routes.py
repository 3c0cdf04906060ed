"""GET /v1/assignments: the running experiments' variants for a device, each exposure logged once.

Owns the route, its access seam (:class:`AssignmentAccess`, the collector's in
:class:`CollectorAccess`) and its runtime (definitions watcher and sticky store).
Invariant: nothing is read from or written to the store before the write key, origin and rate are
checked and the request is charged the exposures it may write; a variant is answered only after
its exposure is acknowledged by the broker; only a source with ``may_bind_user_id`` binds a user id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict

from funnelstream.errors import FieldError, FunnelstreamError
from funnelstream.experiments.definitions import Definitions, DefinitionsWatcher
from funnelstream.experiments.settings import ExperimentsConfig
from ingest.errors import IngestError
from ingest.experiments.assignment import Assigner
from ingest.experiments.exposures import ExposureLogger, ExposureSink, collector_sink
from ingest.experiments.store import AssignmentStore, SqliteAssignmentStore
from ingest.state import state_of
from ingest.web import cors_headers, cross_origin, preflight

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
    """Who may ask for assignments; raising refuses with the host's own answer."""

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


class UserIdNotAllowed(IngestError, status_code=403, code="user_id_not_allowed"): ...


class CollectorAccess:
    """The collector's :class:`AssignmentAccess`: its write keys, rate buckets and CORS headers."""

    def admit(self, request: Request, cost: int) -> None:
        state = state_of(request)
        key = request.headers.get("x-write-key")
        source = state.access.admit(key, cross_origin(request), cost, state.client_ip(request))
        request.state.source = source.name

    def check_user_binding(self, request: Request, user_id: str) -> None:
        # Called only after admit(), which named the request's source.
        if not state_of(request).config.sources[request.state.source].may_bind_user_id:
            reason = "this write key may not bind a user id; ask from your server with a server-side key"
            raise UserIdNotAllowed(
                "user_id may only be sent with a server-side write key", errors=[FieldError("user_id", reason)]
            )

    def headers(self, request: Request) -> dict[str, str]:
        return cors_headers(state_of(request).access, request.headers.get("origin"))


def assignments_router(
    definitions: Callable[[], Definitions], assigner: Assigner, exposures: ExposureLogger, access: AssignmentAccess
) -> APIRouter:
    """``GET /v1/assignments`` over the given definitions, store and exposure sink, under ``access``."""
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


class ExperimentsRuntime:
    """Definitions watcher and sticky store, opened and closed with the host app."""

    def __init__(
        self,
        config: ExperimentsConfig,
        store: AssignmentStore | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.watcher = DefinitionsWatcher(config.definitions_path)
        self.store: AssignmentStore = store if store is not None else SqliteAssignmentStore(config.store_path)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def definitions(self) -> Definitions:
        return self.watcher.current

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Any) -> AsyncIterator[None]:
        # Polling the definitions file applies a published version without a restart.
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.watcher.run(self.config.poll_interval_s, self._stop))
        try:
            yield
        finally:
            self._stop.set()
            await self._task
            close = getattr(self.store, "close", None)
            if close is not None:
                close()

    def router(self, sink: ExposureSink, access: AssignmentAccess) -> APIRouter:
        router = assignments_router(
            self.definitions,
            Assigner(self.definitions, self.store),
            ExposureLogger(self.store, sink, self.clock),
            access,
        )
        # FastAPI runs an included router's lifespan inside the host app's.
        router.lifespan_context = self.lifespan
        return router


def collector_router(
    app: FastAPI,
    config: ExperimentsConfig,
    store: AssignmentStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> APIRouter:
    """The route as the collector mounts it (``app.include_router``): its access rules, its producer,
    its CORS preflight."""
    router = ExperimentsRuntime(config, store, clock).router(collector_sink(app), CollectorAccess())

    async def assignments_preflight(request: Request) -> Response:
        return preflight(state_of(request).access, request, "GET")

    router.add_api_route("/v1/assignments", assignments_preflight, methods=["OPTIONS"], include_in_schema=False)
    return router
