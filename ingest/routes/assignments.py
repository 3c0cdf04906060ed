"""GET /v1/assignments on the collector: the experiments router under the collector's access rules.

The router lives in the ground package (``funnelstream.experiments``), which knows nothing of
write keys; this module hands it the collector's. Invariant: nothing is read from or written to
the assignment store before the write key, the origin and the rate are checked; each request is
charged the exposures it may write; a ``user_id`` is bound only for a source whose keys live on
servers (``may_bind_user_id``), any other key gets 403 naming ``user_id``; every answer carries the
same CORS headers as the event routes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from funnelstream.errors import FieldError
from funnelstream.experiments.settings import ExperimentsConfig
from ingest.errors import IngestError
from ingest.experiments.collector import collector_router
from ingest.experiments.store import AssignmentStore
from ingest.state import state_of
from ingest.web import cors_headers, cross_origin, preflight


class UserIdNotAllowed(IngestError):
    status_code = 403
    code = "user_id_not_allowed"


class CollectorAssignmentAccess:
    """The collector's :class:`~ingest.experiments.routes.AssignmentAccess`."""

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


def router(
    app: FastAPI,
    config: ExperimentsConfig,
    store: AssignmentStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> APIRouter:
    assignments = collector_router(app, config, CollectorAssignmentAccess(), store, clock)

    async def assignments_preflight(request: Request) -> Response:
        return preflight(state_of(request).access, request, "GET")

    assignments.add_api_route("/v1/assignments", assignments_preflight, methods=["OPTIONS"], include_in_schema=False)
    return assignments
