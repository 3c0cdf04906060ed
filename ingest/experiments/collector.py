"""Mounting experiment assignment on the collector (``ingest.app.create_app``).

    app = create_app(ingest_settings)
    app.include_router(collector_router(app, ExperimentSettings().experiments, access))

``access`` is the collector's :class:`~ingest.experiments.routes.AssignmentAccess` (write key,
rate, CORS, who may bind a user id); this package does not know the collector's keys, and there is
no default, so the route is never mounted open.

The router's lifespan opens the sticky store and polls the definitions file, so a published
version applies on every running collector without a restart. Exposures go to the collector's
own producer, on its events topic keyed by ``anonymous_id``, and are acknowledged by the broker
before the assignment is answered, the same durability rule as ``POST /v1/batch``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI

from funnelstream.contract import ExperimentExposure, event_to_json
from funnelstream.experiments.definitions import Definitions, DefinitionsWatcher
from funnelstream.experiments.settings import ExperimentsConfig
from ingest.experiments.assignment import Assigner, ExposureLogger, ExposureSink
from ingest.experiments.routes import AssignmentAccess, assignments_router
from ingest.experiments.store import AssignmentStore, SqliteAssignmentStore


def collector_sink(app: FastAPI) -> ExposureSink:
    """Produce through the collector's producer, looked up per call: it exists only inside the lifespan."""

    async def sink(event: ExperimentExposure) -> None:
        state: Any = app.state.ingest
        topic = state.settings.ingest.events_topic
        await state.producer.send([(topic, event.anonymous_id.encode(), event_to_json(event))])

    return sink


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
    access: AssignmentAccess,
    store: AssignmentStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> APIRouter:
    return ExperimentsRuntime(config, store, clock).router(collector_sink(app), access)
