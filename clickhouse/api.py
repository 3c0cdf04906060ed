"""The query API of the warehouse process (``funnelstream warehouse serve``).

In embedded mode this process owns the chdb data path, so it also runs the loader (in a thread)
and every other reader comes through here (docs/design.md, "Warehouse"). Every query a client can reach runs on the
analyst pool (``clickhouse.analyst``), with its limits; only ``/readyz`` and the loader use the
warehouse's own session, so no client can hold them up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field, StringConstraints

from clickhouse import queries
from clickhouse.access import ReadKeyGate
from clickhouse.analyst import AnalystPool, AnalystReader, AnalystResult
from clickhouse.backend import AnalystEngine, AnalystLimits, Warehouse, open_warehouse
from clickhouse.errors import (
    AnalystBusy,
    LimitExceeded,
    QueryError,
    ReadOnlyViolation,
    UnknownQuery,
    WarehouseError,
)
from clickhouse.experiments.analysis import ExperimentResults
from clickhouse.experiments.monitor import Evaluator, LastResults
from clickhouse.experiments.results import PlanResult
from clickhouse.experiments.routes import results_router
from clickhouse.experiments.service import analysis_config, plan_warehouse
from clickhouse.experiments.warehouse import analyze_warehouse
from clickhouse.loader import Loader
from clickhouse.migrate import migrate
from clickhouse.queries import Breakdown, FunnelMode
from clickhouse.settings import WarehouseSettings
from clickhouse.workspace import charts, experiment_routes, funnel_routes, pages, pipeline, task_time_routes
from clickhouse.workspace.answers import OutputFormat, answer, respond, respond_answer
from clickhouse.workspace.params import FunnelParams, default_range
from funnelstream.experiments.definitions import Definitions, Experiment, load_definitions
from funnelstream.experiments.settings import ExperimentSettings

log = logging.getLogger("funnelstream.warehouse.api")
# Module level: FastAPI resolves these annotations from the module's globals.
FromQuery = Annotated[datetime | None, Query(alias="from", description="start, inclusive (UTC)")]
ToQuery = Annotated[datetime | None, Query(alias="to", description="end, exclusive (UTC)")]


def respond_result(result: AnalystResult, output: OutputFormat, started: float, **extra: Any) -> Response:
    """An analyst answer: ClickHouse's own rendering of the rows, in the shape ``respond`` gives."""
    if output == "csv":
        return Response(result.body, media_type="text/csv", headers={"X-Truncated": str(result.truncated).lower()})
    meta = {"row_count": result.rows, "elapsed_ms": round((time.perf_counter() - started) * 1000, 3)}
    meta.update(extra, truncated=result.truncated)
    return Response(b'{"rows":' + result.body + b"," + orjson.dumps(meta)[1:], media_type="application/json")


ParameterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class SqlRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000)
    parameters: dict[ParameterName, Any] = Field(default_factory=dict, max_length=1000)
    format: OutputFormat = "json"


class NamedQueryRequest(BaseModel):
    parameters: dict[ParameterName, Any] = Field(default_factory=dict, max_length=1000)


class WarehouseState:
    """What the running process holds: the engine, the loader thread and its stats."""

    def __init__(self, settings: WarehouseSettings, warehouse: Warehouse) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.loader: Any = None
        self.loader_thread: threading.Thread | None = None
        self.loader_error: str | None = None
        self.analysts: AnalystPool | None = None

    @property
    def reader(self) -> AnalystReader:
        """Where the API's own queries run: the analyst pool, never the loader's session."""
        if self.analysts is None:
            raise WarehouseError("this warehouse engine cannot run queries apart from its loader")
        return AnalystReader(self.analysts)

    def start_loader(self) -> None:
        loader = Loader(self.settings, self.warehouse)
        self.loader = loader

        def run() -> None:
            # A loader that dies of something unforeseen is started again (a new consumer resumes
            # from the last commit); until then /readyz says why. Only a stop request ends this.
            delay = 1.0
            current = loader
            while True:
                try:
                    current.setup()
                    current.run()
                    return
                except Exception as exc:
                    self.loader_error = f"{type(exc).__name__}: {exc}"
                    log.exception("loader stopped; starting it again", extra={"retry_in_s": delay})
                finally:
                    current.close()
                if current.stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)
                stop = current.stop
                current = Loader(self.settings, self.warehouse)
                current.stop = stop  # a stop requested meanwhile still holds
                self.loader = current
                self.loader_error = None

        self.loader_thread = threading.Thread(target=run, name="warehouse-loader", daemon=True)
        self.loader_thread.start()

    def stop_loader(self, timeout_s: float = 30) -> None:
        if self.loader is not None:
            self.loader.stop.set()
        if self.loader_thread is not None:
            self.loader_thread.join(timeout_s)


def create_app(
    settings: WarehouseSettings | None = None, *, warehouse: Warehouse | None = None, run_loader: bool | None = None
) -> FastAPI:
    settings = settings or WarehouseSettings()
    should_run_loader = settings.warehouse.run_loader if run_loader is None else run_loader

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = warehouse is None
        engine = warehouse or open_warehouse(settings.clickhouse)
        migrate(engine, cluster=settings.clickhouse.cluster)
        state = WarehouseState(settings, engine)
        app.state.warehouse = state
        if isinstance(engine, AnalystEngine):
            state.analysts = AnalystPool(engine, analyst_limits(settings))
        if should_run_loader:
            state.start_loader()
        evaluator: Evaluator = app.state.experiment_evaluator
        evaluator.start()
        try:
            yield
        finally:
            # Drained before the pool it queries is closed.
            evaluator.stop()
            state.stop_loader()
            if state.analysts is not None:
                state.analysts.close()
            if owned:
                engine.close()

    app = FastAPI(title="Funnelstream warehouse", lifespan=lifespan)
    # Outside every route, docs and metrics included: key and body limit come before any of them.
    app.add_middleware(ReadKeyGate, settings=settings)

    def state_of(request: Request) -> WarehouseState:
        state: WarehouseState = request.app.state.warehouse
        return state

    @app.exception_handler(ReadOnlyViolation)
    async def _refused(_: Request, exc: ReadOnlyViolation) -> JSONResponse:
        return JSONResponse(
            {"error": "read_only", "statement": exc.statement_kind, "detail": str(exc)}, status_code=400
        )

    @app.exception_handler(QueryError)
    async def _query_failed(_: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"error": "query_failed", "code": exc.code, "detail": exc.message[:2000]}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        # ASCII JSON: an echoed input may hold a lone surrogate, which UTF-8 cannot encode (a 500).
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True, default=str)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(LimitExceeded)
    async def _over_limit(_: Request, exc: LimitExceeded) -> JSONResponse:
        body = {"error": "limit_exceeded", "limit": exc.limit, "setting": exc.setting, "detail": str(exc)}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(AnalystBusy)
    async def _busy(_: Request, exc: AnalystBusy) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse({"error": "too_many_queries", "detail": str(exc)}, status_code=429, headers=headers)

    @app.exception_handler(UnknownQuery)
    async def _unknown(_: Request, exc: UnknownQuery) -> JSONResponse:
        return JSONResponse({"error": "unknown_query", "detail": str(exc), "known": exc.known}, status_code=404)

    @app.exception_handler(WarehouseError)
    async def _warehouse_failed(_: Request, exc: WarehouseError) -> JSONResponse:
        return JSONResponse({"error": "warehouse", "detail": str(exc)}, status_code=503)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        state = state_of(request)
        try:
            state.warehouse.query_rows("SELECT 1 AS ok")
        except WarehouseError as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        loader = state.loader
        body: dict[str, Any] = {"status": "ready", "embedded": state.warehouse.embedded, "loader": None}
        if loader is not None:
            body["loader"] = {
                "running": state.loader_thread is not None and state.loader_thread.is_alive(),
                "batches": loader.stats.batches,
                "rows_inserted": dict(loader.stats.rows_inserted),
                "rejected": loader.stats.rejected,
                "paused": loader.stats.paused,
                "insert_retries": loader.stats.insert_retries,
                "error": state.loader_error,
            }
            if state.loader_error:
                return JSONResponse({**body, "status": "loader_failed"}, status_code=503)
        return JSONResponse(body)

    @app.get("/v1/funnel")
    def funnel(
        request: Request,
        params: Annotated[FunnelParams, Depends()],
        format: OutputFormat = "json",
        chart: bool = False,
    ) -> Response:
        started = time.perf_counter()
        engine = state_of(request).reader
        funnel_spec = params.funnel_request(engine)
        name = funnel_spec.query_name()
        result = answer(engine, name, funnel_spec.parameters(), query=name, **funnel_spec.completeness())
        return respond_answer(result, format, started, charts.funnel_steps, chart=chart)

    @app.get("/v1/time-to-convert")
    def time_to_convert(
        request: Request,
        params: Annotated[FunnelParams, Depends()],
        format: OutputFormat = "json",
        chart: bool = False,
    ) -> Response:
        started = time.perf_counter()
        engine = state_of(request).reader
        # Time to convert follows the ordered conversion path, whatever mode the page's funnel has.
        spec = params.funnel_request(engine, mode=FunnelMode.ORDERED)
        result = answer(engine, "time_to_convert", spec.parameters(), **spec.completeness())
        return respond_answer(result, format, started, charts.time_to_convert, chart=chart)

    @app.get("/v1/task-times")
    def task_times(
        request: Request,
        start: FromQuery = None,
        end: ToQuery = None,
        view: Literal["images", "summary"] = "images",
        breakdown: Breakdown = Breakdown.NONE,
        experiment: str = "",
        limit: Annotated[int, Query(gt=0, le=1_000_000)] = 10_000,
        format: OutputFormat = "json",
    ) -> Response:
        started = time.perf_counter()
        first, last = default_range(start, end)
        engine = state_of(request).reader
        if view == "summary":
            if breakdown is Breakdown.VARIANT and not experiment:
                experiment = queries.top_experiment(engine, first, last)
            try:
                rows = queries.task_time_summary(engine, first, last, breakdown, experiment)
            except ValueError as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from None
        else:
            rows = queries.task_times(engine, first, last, limit)
        return respond(rows, format, started)

    @app.get("/v1/trends")
    def trends(
        request: Request,
        start: FromQuery = None,
        end: ToQuery = None,
        window: Annotated[int, Query(gt=0)] = 3600,
        format: OutputFormat = "json",
    ) -> Response:
        started = time.perf_counter()
        first, last = default_range(start, end)
        rows = queries.daily_conversion(state_of(request).reader, first, last, window)
        # Each day says whether it is final (its end + window is past); the answer is when all are.
        complete_at = last + timedelta(seconds=window)
        complete = complete_at <= datetime.now(UTC) and all(row["complete"] for row in rows)
        return respond(rows, format, started, complete=complete, complete_at=complete_at.isoformat())

    @app.get("/v1/scores")
    def scores(
        request: Request, start: FromQuery = None, end: ToQuery = None, format: OutputFormat = "json"
    ) -> Response:
        started = time.perf_counter()
        first, last = default_range(start, end)
        return respond(queries.scores_by_model(state_of(request).reader, first, last), format, started)

    @app.get("/v1/freshness")
    def freshness(request: Request, minutes: Annotated[int, Query(gt=0, le=10_080)] = 5) -> Response:
        started = time.perf_counter()
        return respond(queries.freshness(state_of(request).reader, minutes), "json", started)

    def analysts_of(request: Request) -> AnalystPool:
        pool = state_of(request).analysts
        if pool is None:
            raise WarehouseError("this warehouse engine cannot run analyst SQL")
        return pool

    @app.post("/v1/sql")
    def sql(request: Request, body: SqlRequest) -> Response:
        started = time.perf_counter()
        result = analysts_of(request).sql(body.sql, body.parameters, body.format)
        return respond_result(result, body.format, started)

    @app.post("/v1/queries/{name}")
    def named_query(request: Request, name: str, body: Annotated[NamedQueryRequest, Body()]) -> Response:
        started = time.perf_counter()
        if name not in queries.names():
            raise UnknownQuery(name, queries.names())
        result = analysts_of(request).named(queries.load(name), body.parameters)
        return respond_result(result, "json", started, query=name)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        text = _metrics_text(state_of(request), request.app.state.experiment_results)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    app.include_router(_experiment_results_router(app))
    # After the results router: the experiment panels read the definitions and results it sets on app.state.
    app.include_router(experiment_routes.router)
    app.include_router(funnel_routes.router)
    app.include_router(task_time_routes.router)
    app.include_router(pipeline.router)
    app.include_router(pages.router)
    return app


def analyst_limits(settings: WarehouseSettings) -> AnalystLimits:
    return AnalystLimits(
        max_rows=settings.sql.max_rows,
        max_seconds=settings.sql.max_seconds,
        max_memory_bytes=settings.sql.max_memory_bytes,
        max_result_bytes=settings.sql.max_result_bytes,
        max_threads=settings.sql.max_threads,
        max_concurrent=settings.sql.max_concurrent,
    )


def _experiment_results_router(app: FastAPI) -> Any:
    """``GET /v1/experiments/{key}/results`` and ``/plan``, computed from this process's own warehouse;
    every result computed (by a request or the periodic evaluation) feeds the /metrics gauges."""
    experiments = ExperimentSettings().experiments
    config = analysis_config(experiments)

    def compute(experiment: Experiment, sequential: bool) -> ExperimentResults:
        reader = app.state.warehouse.reader
        return analyze_warehouse(reader, experiment, replace(config, sequential=sequential))

    def plan(experiment: Experiment, mde: float, power: float, days: float) -> PlanResult:
        reader = app.state.warehouse.reader
        return plan_warehouse(reader, experiment, mde=mde, power=power, days=days, alpha=config.alpha)

    def definitions() -> Definitions:
        # Reading the small definitions file each time picks up a published change without a restart.
        return load_definitions(experiments.definitions_path)

    last = LastResults()
    results = last.recording(compute)
    app.state.experiment_results = last
    # The workspace's experiment panels compute through the same recording function as the route.
    app.state.experiment_definitions = definitions
    app.state.experiment_compute = results
    app.state.experiment_evaluator = Evaluator(experiments.evaluate_interval_s, definitions, results)
    return results_router(definitions, results, plan)


def _metrics_text(state: WarehouseState, experiments: LastResults | None = None) -> str:
    lines = []
    loader = state.loader
    if loader is not None:
        lines.append("# TYPE funnelstream_loader_batches_total counter")
        lines.append(f"funnelstream_loader_batches_total {loader.stats.batches}")
        lines.append("# TYPE funnelstream_loader_rows_total counter")
        for table, count in sorted(loader.stats.rows_inserted.items()):
            lines.append(f'funnelstream_loader_rows_total{{table="{table}"}} {count}')
        lines.append("# TYPE funnelstream_loader_insert_seconds summary")
        for table in sorted(loader.stats.inserts):
            seconds, count = loader.stats.insert_seconds[table], loader.stats.inserts[table]
            lines.append(f'funnelstream_loader_insert_seconds_sum{{table="{table}"}} {seconds}')
            lines.append(f'funnelstream_loader_insert_seconds_count{{table="{table}"}} {count}')
        lines.append("# TYPE funnelstream_loader_batch_rows gauge")
        lines.append(f"funnelstream_loader_batch_rows {loader.stats.last_batch_rows}")
        lines.append("# TYPE funnelstream_loader_rejected_total counter")
        lines.append(f"funnelstream_loader_rejected_total {loader.stats.rejected}")
        lines.append("# TYPE funnelstream_loader_paused gauge")
        lines.append(f"funnelstream_loader_paused {int(loader.stats.paused)}")
    try:
        # On the pool like every client-reachable query; when it is full the gauge is left out.
        fresh = queries.freshness(state.reader, 5)
    except WarehouseError:
        fresh = []
    if fresh and fresh[0]["events"]:
        lines.append("# TYPE funnelstream_freshness_ms gauge")
        for quantile in ("p50_ms", "p90_ms", "p99_ms"):
            lines.append(f'funnelstream_freshness_ms{{quantile="{quantile[:-3]}"}} {fresh[0][quantile]}')
    if experiments is not None:
        lines += experiments.metrics_lines()
    return "\n".join(lines) + "\n"
