"""The query parameters of the analysis routes: every funnel route's (``FunnelParams``), the default
range, the reader a route queries through and how it answers (``Out``: format and chart).

Owns how a funnel's URL state (range, steps, window, unit, mode, breakdown, experiment, exclusion
step and the filters) becomes a ``FunnelRequest``. Invariant: every parameter is validated before
any query runs, and a bad one is a 422 naming it; free strings are bounded and only ever passed
to ClickHouse as query parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import Response

from clickhouse import queries
from clickhouse.backend import WarehouseReads
from clickhouse.queries import Breakdown, FunnelFilters, FunnelMode, FunnelRequest, Unit
from clickhouse.workspace.answers import Answer, ChartOf, OutputFormat, respond_answer

MAX_TEXT = 200
DEFAULT_RANGE = timedelta(days=7)

Text = Annotated[str, Query(max_length=MAX_TEXT)]
SizeBucket = Literal["", "small", "medium", "large"]


def utc(value: datetime) -> datetime:
    """A client's time in UTC; one without a zone is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def default_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """``[from, to)`` in UTC; without ``to`` up to now, without ``from`` the seven days before ``to``."""
    last = utc(end) if end else datetime.now(UTC)
    return (utc(start) if start else last - DEFAULT_RANGE), last


def reader_of(request: Request) -> WarehouseReads:
    """The analyst pool's reader of the running warehouse app: every client query runs within its limits."""
    reader: WarehouseReads = request.app.state.warehouse.reader
    return reader


@dataclass(frozen=True, slots=True)
class Output:
    """How a route answers (``format``, ``chart``) and when its work started."""

    format: OutputFormat
    chart: bool
    started: float

    def respond(self, result: Answer, chart_of: ChartOf | None = None) -> Response:
        return respond_answer(result, self.format, self.started, chart_of, chart=self.chart)


def output(format: OutputFormat = "json", chart: bool = False) -> Output:
    return Output(format, chart, time.perf_counter())


Out = Annotated[Output, Depends(output)]


class FunnelParams:
    """Funnel state from the query string; defaults as ``GET /v1/funnel`` has them: the last
    seven days up to now, the default steps, a one-hour window, image units, ordered, no breakdown."""

    def __init__(
        self,
        start: Annotated[datetime | None, Query(alias="from", description="start, inclusive (UTC)")] = None,
        end: Annotated[datetime | None, Query(alias="to", description="end, exclusive (UTC)")] = None,
        steps: Annotated[
            str | None, Query(max_length=MAX_TEXT, description="comma-separated event types, 1 to 5")
        ] = None,
        window: Annotated[int, Query(gt=0, description="seconds")] = 3600,
        unit: Unit = Unit.IMAGE,
        mode: FunnelMode = FunnelMode.ORDERED,
        breakdown: Breakdown = Breakdown.NONE,
        experiment: Text = "",
        exclude: Text = "",
        tool: Annotated[str, Query(max_length=MAX_TEXT, description="only this tool's tool events")] = "",
        inference_type: Annotated[
            str, Query(max_length=MAX_TEXT, description="only this inference type's inference events")
        ] = "",
        variant: Annotated[
            str, Query(max_length=MAX_TEXT, description="only devices in this arm of the experiment")
        ] = "",
        source: Annotated[str, Query(max_length=MAX_TEXT, description="only events from this source")] = "",
        browser: Annotated[str, Query(max_length=MAX_TEXT, description="only this browser's events")] = "",
        os: Annotated[str, Query(max_length=MAX_TEXT, description="only this OS's events")] = "",
        device: Annotated[str, Query(max_length=MAX_TEXT, description="only this device type's events")] = "",
        size: Annotated[SizeBucket, Query(description="only uploads of this size bucket")] = "",
    ) -> None:
        self.start = start
        self.end = end
        self.steps = steps
        self.window = window
        self.unit = unit
        self.mode = mode
        self.breakdown = breakdown
        self.experiment = experiment
        self.exclude = exclude
        self.filters = FunnelFilters(
            tool=tool,
            inference_type=inference_type,
            variant=variant,
            source=source,
            browser=browser,
            os=os,
            device=device,
            size=size,
        )

    def range(self) -> tuple[datetime, datetime]:
        return default_range(self.start, self.end)

    def funnel_request(self, reader: WarehouseReads, *, mode: FunnelMode | None = None) -> FunnelRequest:
        """The request these parameters describe; ``mode`` overrides the URL's (time to convert is
        ordered). A variant breakdown without an experiment compares the range's top experiment."""
        first, last = self.range()
        chosen = tuple(s.strip() for s in self.steps.split(",") if s.strip()) if self.steps else queries.DEFAULT_STEPS
        experiment = self.experiment
        if self.breakdown is Breakdown.VARIANT and not experiment:
            experiment = queries.top_experiment(reader, first, last)
        try:
            return FunnelRequest(
                start=first,
                end=last,
                steps=chosen,
                window_s=self.window,
                unit=self.unit,
                mode=mode or self.mode,
                breakdown=self.breakdown,
                experiment=experiment,
                exclude=self.exclude,
                filters=self.filters,
            )
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
