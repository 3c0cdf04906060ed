"""Exposure logging: the ``experiment_exposure`` event of an assignment, written once per unit,
experiment and phase, and the collector's sink that produces it.

Invariant: the store claims an exposure before it is sent and releases the claim when the sink
fails, so concurrent requests send it once and a failed one is sent by the next request; the event
id derives from (experiment, phase, unit), so a re-sent exposure collapses in dedup.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from funnelstream.contract import EventType, ExperimentExposure, event_to_json
from ingest.experiments.assignment import Assignment, AssignmentSource
from ingest.experiments.store import AssignmentStore
from ingest.state import IngestState

EXPOSURE_ID_NAMESPACE = uuid.UUID("6f1c8a52-93b0-4c8e-9d0e-2f7a5f0e6a11")
EXPOSURE_SOURCE = "experiments"


def exposure_event(assignment: Assignment, anonymous_id: str, user_id: str | None, now: datetime) -> ExperimentExposure:
    if assignment.variant is None:
        raise ValueError(f"{assignment.experiment_key}: unit is not in the experiment; nothing to expose")
    event_id = uuid.uuid5(EXPOSURE_ID_NAMESPACE, f"{assignment.experiment_key}:{assignment.phase}:{anonymous_id}")
    return ExperimentExposure(
        event_type=EventType.EXPERIMENT_EXPOSURE,
        event_id=event_id,
        anonymous_id=anonymous_id,
        user_id=user_id,
        client_ts=now,
        sent_at=now,
        received_at=now,
        event_ts=now,
        source=EXPOSURE_SOURCE,
        experiment_key=assignment.experiment_key,
        variant=assignment.variant,
        experiments={assignment.experiment_key: assignment.variant},
        properties={"assignment_source": str(assignment.source), "phase": assignment.phase},
    )


ExposureSink = Callable[[ExperimentExposure], Awaitable[None] | None]


class ExposureLogger:
    """Emits ``experiment_exposure`` once per unit, experiment and phase.

    A forced QA assignment is answered but never exposed, as GrowthBook returns forced variations
    without tracking: the QA device is not a unit of the experiment, and an exposure would put it in
    the analysis and its sample-ratio check.

    The store claims the exposure first so that concurrent requests emit once; when the sink
    fails, the claim is released and the error propagates, so the next request tries again. The
    sink may be a plain function or a coroutine function (the collector's producer is async).
    """

    def __init__(self, store: AssignmentStore, sink: ExposureSink, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.sink = sink
        self.clock = clock or (lambda: datetime.now(UTC))

    async def log(self, assignment: Assignment, anonymous_id: str, user_id: str | None = None) -> bool:
        if assignment.variant is None or assignment.source is AssignmentSource.FORCED:
            return False
        claimed = await asyncio.to_thread(
            self.store.mark_exposed, assignment.experiment_key, assignment.phase, anonymous_id
        )
        if not claimed:
            return False
        try:
            outcome = self.sink(exposure_event(assignment, anonymous_id, user_id, self.clock()))
            if inspect.isawaitable(outcome):
                await outcome
        except BaseException:
            await asyncio.to_thread(
                self.store.forget_exposure, assignment.experiment_key, assignment.phase, anonymous_id
            )
            raise
        return True


def collector_sink(app: FastAPI) -> ExposureSink:
    """Produce on the collector's events topic, keyed by ``anonymous_id``, acknowledged by the broker.

    The producer is looked up per call: it exists only inside the app's lifespan."""

    async def sink(event: ExperimentExposure) -> None:
        state: IngestState = app.state.ingest
        topic = state.settings.ingest.events_topic
        await state.producer.send([(topic, event.anonymous_id.encode(), event_to_json(event))])

    return sink
