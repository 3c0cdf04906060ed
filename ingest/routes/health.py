"""Liveness, readiness (Kafka reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.state import state_of
from ingest.web import json_response

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="The process answers and its producer is usable",
    responses={503: {"description": "The producer failed fatally; restart the process"}},
)
async def healthz(request: Request) -> Response:
    fatal = state_of(request).producer.fatal_error
    if fatal is not None:
        return json_response({"status": "producer failed", "detail": fatal}, 503)
    return json_response({"status": "ok"}, 200)


@router.get("/readyz", summary="Kafka answers a metadata request", responses={503: {"description": "Kafka away"}})
async def readyz(request: Request) -> Response:
    state = state_of(request)
    ready = await asyncio.to_thread(state.producer.ready, state.config.readiness_timeout_s)
    return json_response({"status": "ready" if ready else "kafka unreachable"}, 200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(state_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
