"""The funnel page's drop-off routes: conversion over time, the time-to-convert histogram, the
units that dropped at a step, their paths after dropping off and what goes with dropping off.

Each route takes the funnel's whole state (``FunnelParams``) plus its own bounded parameters and
answers rows, the SQL that ran and, with ``chart=1``, its figure. Invariant: every parameter is
validated before any query runs; a step outside the funnel is a 422 naming ``step``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from clickhouse import funnel_analysis
from clickhouse.backend import WarehouseReads
from clickhouse.funnel_analysis import Interval
from clickhouse.queries import FunnelMode, FunnelRequest
from clickhouse.workspace import charts
from clickhouse.workspace.answers import Answer, ChartOf, OutputFormat, respond_answer
from clickhouse.workspace.params import FunnelParams, reader_of

router = APIRouter(tags=["workspace"])

Step = Annotated[int, Query(ge=2, le=5, description="the step dropped at: reached the one before, not this one")]
Depth = Annotated[int, Query(ge=1, le=5, description="how many next events")]
MinCount = Annotated[int, Query(ge=0, le=1_000_000_000, description="fewest units (converted + dropped) shown")]
Params = Annotated[FunnelParams, Depends()]


def _respond(
    request: Request,
    params: FunnelParams,
    run: Callable[[WarehouseReads, FunnelRequest], Answer],
    output: OutputFormat,
    chart_of: ChartOf | None,
    chart: bool,
    mode: FunnelMode | None = None,
) -> Response:
    started = time.perf_counter()
    reader = reader_of(request)
    try:
        result = run(reader, params.funnel_request(reader, mode=mode))
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return respond_answer(result, output, started, chart_of, chart=chart)


@router.get("/v1/funnel/over-time")
def over_time(
    request: Request, params: Params, interval: Interval = "day", format: OutputFormat = "json", chart: bool = False
) -> Response:
    def run(reader: WarehouseReads, funnel: FunnelRequest) -> Answer:
        return funnel_analysis.over_time(reader, funnel, interval)

    return _respond(request, params, run, format, charts.funnel_over_time, chart)


@router.get("/v1/funnel/time-to-convert/histogram")
def ttc_histogram(request: Request, params: Params, format: OutputFormat = "json", chart: bool = False) -> Response:
    # Ordered, as /v1/time-to-convert: its P50/P90 are the histogram's.
    return _respond(
        request, params, funnel_analysis.ttc_histogram, format, charts.ttc_histogram, chart, FunnelMode.ORDERED
    )


@router.get("/v1/funnel/dropped")
def dropped(
    request: Request,
    params: Params,
    step: Step = 2,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    format: OutputFormat = "json",
    chart: bool = False,
) -> Response:
    def run(reader: WarehouseReads, funnel: FunnelRequest) -> Answer:
        return funnel_analysis.dropped_units(reader, funnel, step, limit)

    # A table (and the CSV of the units), not a chart.
    return _respond(request, params, run, format, None, chart)


@router.get("/v1/funnel/paths-after-dropoff")
def paths_after_dropoff(
    request: Request,
    params: Params,
    step: Step = 2,
    depth: Depth = 3,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 20,
    format: OutputFormat = "json",
    chart: bool = False,
) -> Response:
    def run(reader: WarehouseReads, funnel: FunnelRequest) -> Answer:
        return funnel_analysis.paths_after_dropoff(reader, funnel, step, depth, limit)

    return _respond(request, params, run, format, charts.paths, chart)


@router.get("/v1/funnel/correlation")
def correlation(
    request: Request,
    params: Params,
    step: Step = 2,
    min_count: MinCount = 10,
    format: OutputFormat = "json",
    chart: bool = False,
) -> Response:
    def run(reader: WarehouseReads, funnel: FunnelRequest) -> Answer:
        return funnel_analysis.correlation(reader, funnel, step, min_count)

    return _respond(request, params, run, format, charts.correlation, chart)
