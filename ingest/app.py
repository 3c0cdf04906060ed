"""The collector app: ``create_app(settings)`` builds it; Kafka clients are made in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, cast

from confluent_kafka import Producer
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from minio import Minio
from pydantic.json_schema import models_json_schema
from starlette.types import Receive, Scope, Send

from funnelstream.contract import EVENT_ADAPTER
from funnelstream.errors import FieldError
from funnelstream.objectstore import MinioStore, make_client
from ingest.access import AccessControl
from ingest.errors import IngestError, InvalidEvent, Unauthorized
from ingest.experiments.routes import collector_router
from ingest.metrics import IngestMetrics
from ingest.producer import CollectorProducer, ProducerLike, collector_producer_config
from ingest.results import ResultCache, ResultFollower
from ingest.routes import demo, events, health, jobs, uploads
from ingest.schemas import BatchAccepted, ErrorBody, EventAccepted
from ingest.settings import IngestSettings, hash_write_key
from ingest.state import IngestState, state_of
from ingest.web import error_response, json_response

log = logging.getLogger(__name__)


def _kafka_producer(settings: IngestSettings) -> ProducerLike:
    # confluent-kafka's stubs spell produce() with more options than the collector uses.
    return cast(ProducerLike, Producer(collector_producer_config(settings.kafka, settings.ingest)))


class CollectorApp(FastAPI):
    """FastAPI, with POST /v1/batch and /v1/event dispatched before its middleware and router.

    Measured in process, the framework's stack costs more per request than the whole pipeline of a
    single event. The hot routes handle their own errors and CORS, so
    they skip it; every other route, including ones mounted later, goes through FastAPI as usual.
    They are also registered as ordinary routes, which serve them when the app is mounted elsewhere.
    """

    hot_routes: Mapping[str, Callable[[Request], Awaitable[Response]]] = MappingProxyType({})
    read_key_paths: frozenset[str] = frozenset()
    """Paths served only with a read key (``Authorization: Bearer``): the operations pages in prod."""
    read_key_hashes: frozenset[str] = frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "POST":
                endpoint = self.hot_routes.get(scope["path"])
                if endpoint is not None:
                    scope["app"] = self
                    response = await endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
            elif scope["path"] in self.read_key_paths and not self._has_read_key(Request(scope)):
                refusal = Unauthorized("send a read key: Authorization: Bearer <key>")
                await json_response(refusal.body(), 401, {"www-authenticate": "Bearer"})(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _has_read_key(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        return scheme.lower() == "bearer" and bool(key) and hash_write_key(key) in self.read_key_hashes


def create_app(
    settings: IngestSettings | None = None,
    *,
    producer_factory: Callable[[IngestSettings], ProducerLike] = _kafka_producer,
    presigner_factory: Callable[[IngestSettings], Minio] = lambda s: make_client(s.s3, public=True),
    store_factory: Callable[[IngestSettings], MinioStore] = lambda s: MinioStore.of(s.s3),
) -> FastAPI:
    """Other routers (e.g. experiment assignment) are added with ``app.include_router``; they reach
    the shared state through ``request.app.state.ingest``."""
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = IngestMetrics()
        producer = CollectorProducer(producer_factory(settings), settings.ingest)
        producer.start()
        # Bounded by the readiness timeout; a broker away at start leaves plain records until the
        # background refresh learns the count.
        await producer.learn_partitions()
        cache = ResultCache(settings.ingest.results_cache_size)
        follower = None
        if settings.ingest.results_consumer:
            follower = ResultFollower(
                settings.kafka,
                settings.ingest.results_topic,
                cache,
                lookback_s=settings.ingest.results_lookback_s,
                on_undecodable=metrics.results_undecodable.inc,
            )
            follower.start()
        metrics.watch(producer.queue_depth, cache.__len__)
        app.state.ingest = IngestState(
            settings=settings,
            access=AccessControl(settings.ingest.sources, settings.ingest.clients),
            producer=producer,
            metrics=metrics,
            results=cache,
            presigner=presigner_factory(settings),
            store=store_factory(settings),
        )
        try:
            yield
        finally:
            # uvicorn has stopped accepting and drained in-flight requests by now (SIGTERM).
            if follower is not None:
                follower.close()
            await producer.close(settings.ingest.delivery_timeout_s + 1.0)
            log.info("collector stopped")

    app = CollectorApp(
        title="Funnelstream collector",
        version="1",
        description="Funnel events in, durably into Kafka. `202` means stored (acks=all).",
        lifespan=lifespan,
    )
    app.include_router(events.router)
    app.hot_routes = {"/v1/batch": events.post_batch, "/v1/event": events.post_event}
    if settings.environment == "prod":
        # The metrics and the API's map are for operators, not for whoever reaches the port.
        app.read_key_paths = frozenset({"/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
        app.read_key_hashes = frozenset(settings.ingest.read_key_sha256)
    app.include_router(uploads.router)
    app.include_router(jobs.router)
    app.include_router(health.router)
    if settings.ingest.experiments_enabled:
        app.include_router(collector_router(app, settings.experiments))
    if settings.ingest.demo_page:
        app.include_router(demo.router(settings.ingest.demo_write_key))

    @app.exception_handler(IngestError)
    async def _ingest_error(request: Request, exc: IngestError) -> Response:
        state = state_of(request)
        state.metrics.rejected.labels(exc.code).inc()
        return error_response(exc, state.access, request.headers.get("origin"))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # The same error body as every other refusal, so a client parses one shape.
        errors = [
            FieldError(".".join(str(part) for part in err["loc"] if part != "body") or "body", str(err["msg"]))
            for err in exc.errors()
        ]
        refusal = InvalidEvent("the request body is not valid", errors=errors)
        return await _ingest_error(request, refusal)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the event contract, which the hot routes read without a body model."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    event_schema = EVENT_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(event_schema.pop("$defs", {}))
    components["Event"] = event_schema
    _, models = models_json_schema(
        [(model, "serialization") for model in (BatchAccepted, EventAccepted, ErrorBody)],
        ref_template="#/components/schemas/{model}",
    )
    components.update(models.get("$defs", {}))
    schema["paths"] = {**events.OPENAPI_PATHS, **schema["paths"]}
    write_key = {"type": "string", "description": "Write key of a beacon, which cannot set headers"}
    components["BatchRequest"] = {
        "type": "object",
        "required": ["batch"],
        "properties": {
            "batch": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}, "minItems": 1, "maxItems": 500},
            "sent_at": {"type": "string", "format": "date-time", "description": "Default for events without one"},
            "writeKey": write_key,
        },
    }
    components["EventRequest"] = {
        "allOf": [{"$ref": "#/components/schemas/Event"}],
        "properties": {"writeKey": write_key},
    }
    schema.setdefault("components", {})["securitySchemes"] = {
        "WriteKey": {"type": "apiKey", "in": "header", "name": "X-Write-Key"}
    }
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"WriteKey": []}]
    app.openapi_schema = schema
    return schema
