"""The task-time page's routes: the per-image task time ("Diff Second") as a distribution by tool or
variant, its trend by day, the slowest images and one image's events, each a named query.

Every query reads the ``task_time_images`` view over ``task_durations``, so task time is defined
once (docs/analytics-definitions.md, "Task time"). Invariant: a variant is an arm of one experiment,
the one asked for or else the range's top experiment, as ``/v1/task-times`` picks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from clickhouse import queries
from clickhouse.backend import WarehouseReads
from clickhouse.workspace import charts
from clickhouse.workspace.answers import Answer, Figure, Rows, answer
from clickhouse.workspace.panels import PageState, PanelLink, route
from clickhouse.workspace.params import Out, default_range, reader_of

router = APIRouter(tags=["workspace"])

Dimension = Literal["tool", "variant"]
TrendDimension = Literal["none", "tool", "variant"]
Bounded = Annotated[str, Query(max_length=200)]


@dataclass(frozen=True, slots=True)
class TaskTimeRange:
    start: datetime
    end: datetime
    experiment: str
    """'' until resolved: :func:`resolved` picks the range's top experiment then."""

    def parameters(self) -> dict[str, object]:
        return {"from": self.start, "to": self.end, "experiment": self.experiment}


def task_time_range(
    start: Annotated[datetime | None, Query(alias="from", description="start, inclusive (UTC)")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="end, exclusive (UTC)")] = None,
    experiment: Annotated[
        str, Query(max_length=200, description="experiment whose arms are the variants; default: the top one")
    ] = "",
) -> TaskTimeRange:
    """The images whose first tool click is in [from, to) (default: the last 7 days)."""
    first, last = default_range(start, end)
    return TaskTimeRange(first, last, experiment)


def resolved(reader: WarehouseReads, span: TaskTimeRange) -> TaskTimeRange:
    """``span`` with its experiment: the one asked for, else the range's top experiment ('' if none)."""
    if span.experiment:
        return span
    return TaskTimeRange(span.start, span.end, queries.top_experiment(reader, span.start, span.end))


Range = Annotated[TaskTimeRange, Depends(task_time_range)]


def histogram(reader: WarehouseReads, span: TaskTimeRange, dimension: Dimension) -> Answer:
    return _by_dimension(reader, span, "task_time_histogram", dimension)


def daily(reader: WarehouseReads, span: TaskTimeRange, dimension: TrendDimension) -> Answer:
    return _by_dimension(reader, span, "task_time_daily", dimension)


def _by_dimension(reader: WarehouseReads, span: TaskTimeRange, name: str, dimension: str) -> Answer:
    span = resolved(reader, span) if dimension == "variant" else span
    return answer(reader, name, {**span.parameters(), "dimension": dimension}, experiment=span.experiment)


def slowest(reader: WarehouseReads, span: TaskTimeRange, limit: int, tool: str = "", variant: str = "") -> Answer:
    span = resolved(reader, span)
    parameters = {**span.parameters(), "limit": limit, "tool": tool, "variant": variant}
    return answer(reader, "task_time_slowest", parameters, experiment=span.experiment)


def image_timeline(reader: WarehouseReads, input_id: UUID, limit: int) -> Answer:
    return answer(reader, "image_timeline", {"input_id": input_id, "limit": limit}, input_id=str(input_id))


@router.get("/v1/task-time/histogram")
def histogram_route(request: Request, span: Range, out: Out, dimension: Dimension = "tool") -> Response:
    """Saved images per log-spaced bin of task time (bin 0: [0, 1) s, bin b: [2^(b-1), 2^b) s), per group."""
    return out.respond(histogram(reader_of(request), span, dimension), charts.task_time_histogram)


@router.get("/v1/task-time/daily")
def daily_route(request: Request, span: Range, out: Out, dimension: TrendDimension = "tool") -> Response:
    """Per UTC day of the first tool click and group: images, saved images, mean, P50 and P90 seconds."""
    return out.respond(daily(reader_of(request), span, dimension), charts.task_time_trend)


@router.get("/v1/task-time/slowest")
def slowest_route(
    request: Request,
    span: Range,
    out: Out,
    limit: Annotated[int, Query(gt=0, le=10_000)] = 50,
    tool: Bounded = "",
    variant: Bounded = "",
) -> Response:
    """The saved images with the longest task time (input_id, seconds, tool, variant, ...)."""
    return out.respond(slowest(reader_of(request), span, limit, tool, variant), _slowest_chart)


@router.get("/v1/images/{input_id}/timeline")
def timeline_route(
    request: Request, input_id: UUID, out: Out, limit: Annotated[int, Query(gt=0, le=10_000)] = 1000
) -> Response:
    """One image's events in time order, with the seconds since its first event."""
    return out.respond(image_timeline(reader_of(request), input_id, limit), charts.image_timeline)


def _slowest_chart(rows: Rows) -> Figure:
    labels = [str(row["input_id"]) for row in rows]
    return charts.bar(
        labels,
        {"seconds": [row["seconds"] for row in rows]},
        title="Slowest images",
        horizontal=True,
        value_title="seconds",
        category_title="image",
    )


def task_time_panels(state: PageState) -> list[PanelLink]:
    """Task time by tool and by variant, by day, the slowest images and, when the page names one
    (``input_id``), that image's events."""
    panels = [
        PanelLink("tt-tool", "Task time per image by tool", route("/v1/task-time/histogram", dimension="tool")),
        PanelLink(
            "tt-variant", "Task time per image by variant", route("/v1/task-time/histogram", dimension="variant")
        ),
        PanelLink("tt-daily", "Task time by day (P50, P90) per tool", route("/v1/task-time/daily", dimension="tool")),
        PanelLink("tt-slowest", "Slowest images", "/v1/task-time/slowest"),
    ]
    image = state.get("input_id", "").strip()
    if image:
        # Quoted whole: anything but a UUID stays one path segment, which the route refuses with a 422.
        panels.append(PanelLink("tt-timeline", "Events of the image", f"/v1/images/{quote(image, safe='')}/timeline"))
    return panels
