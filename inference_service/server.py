"""``funnelstream inference serve``: the job worker plus /healthz, /readyz and /metrics on one port."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict

import anyio
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from funnelstream.kafka import wait_for_broker
from funnelstream.objectstore import MinioStore
from inference_service.models.registry import ModelRegistry
from inference_service.pipeline import JobProcessor
from inference_service.settings import InferenceSettings
from inference_service.worker import InferenceWorker

log = logging.getLogger(__name__)


def create_app(settings: InferenceSettings, on_worker_exit: Callable[[BaseException | None], None]) -> FastAPI:
    state: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading models and waiting for Kafka block; keep them off the event loop.
        registry = await anyio.to_thread.run_sync(ModelRegistry.load, settings.inference)
        await anyio.to_thread.run_sync(wait_for_broker, settings.kafka)
        store = MinioStore.of(settings.s3)
        worker = InferenceWorker(settings, JobProcessor(registry, store, settings.inference))
        state.update(registry=registry, worker=worker)

        def run_worker() -> None:
            error: BaseException | None = None
            try:
                worker.run()
            except BaseException as exc:
                log.exception("inference worker stopped")
                error = exc
            on_worker_exit(error)

        thread = threading.Thread(target=run_worker, name="inference-worker", daemon=True)
        thread.start()
        try:
            yield
        finally:
            worker.stop()
            await anyio.to_thread.run_sync(thread.join, settings.inference.drain_timeout_s + 30)

    app = FastAPI(title="Funnelstream inference", lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        worker = state.get("worker")
        registry = state.get("registry")
        if not isinstance(worker, InferenceWorker) or not isinstance(registry, ModelRegistry):
            return JSONResponse({"status": "starting"}, status_code=503)
        if not worker.ready.is_set():
            return JSONResponse({"status": "not consuming"}, status_code=503)
        return JSONResponse({"status": "ready", "models": [asdict(info) for info in registry.infos]})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(settings: InferenceSettings) -> int:
    """Run until SIGTERM/SIGINT (drain, then exit 0) or until the worker fails (exit 1)."""
    outcome: dict[str, BaseException | None] = {"error": None}
    server: uvicorn.Server | None = None

    def on_worker_exit(error: BaseException | None) -> None:
        outcome["error"] = error
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_worker_exit)
    config = uvicorn.Config(
        app, host=settings.inference.host, port=settings.inference.port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the stop signal after its graceful shutdown; by then the worker has drained
    # and committed, so that second delivery only needs to end the process with our exit code.
    received: list[int] = []
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda number, _frame: received.append(number))
    server.run()
    if outcome["error"] is not None:
        return 1
    if not server.started:
        return 1  # start-up failed (a model or the broker); uvicorn has logged why
    return 0
