"""The experiment pages' routes: the list of definitions with their status and health, and per
experiment its exposures, sample ratio, contamination, metrics, lift over time and guardrails.

Every panel is rows taken from the ``ExperimentResults`` that ``GET /v1/experiments/{key}/results``
returns, computed by the same function (``app.state.experiment_compute``), shared by the panels of
a page for a few seconds; its SQL is the per-unit query behind it. Invariant: a panel never computes
a figure of its own; it reshapes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response

from clickhouse import queries
from clickhouse.experiments.analysis import ExperimentResults, MetricResult
from clickhouse.experiments.monitor import alert_lines
from clickhouse.experiments.routes import RETRY_AFTER_S
from clickhouse.experiments.warehouse import CONTAMINATED_QUERY, EVENTS_QUERY, UNITS_QUERY, query_parameters
from clickhouse.workspace import charts
from clickhouse.workspace.answers import Answer, Figure, Rows, inline_sql
from clickhouse.workspace.panels import PanelLink, route
from clickhouse.workspace.params import Out
from funnelstream.errors import TransientError
from funnelstream.experiments.definitions import Definitions, Experiment, Status
from funnelstream.experiments.errors import UnknownExperimentError, WarehouseUnavailableError

router = APIRouter(tags=["workspace"])

SHARED_FOR_S = 15.0
"""How long one computation serves the panels of a page (they all ask at once)."""
Panel = Literal["exposures", "srm", "contamination", "contaminated-units", "metrics", "lift", "guardrails"]
Series = Literal["cumulative", "exposure_day"]
Compute = Callable[[Experiment, bool], ExperimentResults]


@dataclass
class SharedResults:
    """Results per (experiment, phase, mode) for ``SHARED_FOR_S``; one computation at a time per key,
    so a page's panels asking together wait for one analysis instead of running one each."""

    entries: dict[tuple[str, int, bool], tuple[float, ExperimentResults]] = field(default_factory=dict)
    locks: dict[tuple[str, int, bool], threading.Lock] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def get(self, experiment: Experiment, sequential: bool, compute: Compute) -> ExperimentResults:
        key = (experiment.key, experiment.phase, sequential)
        with self.guard:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            entry = self.entries.get(key)
            if entry is not None and time.monotonic() - entry[0] < SHARED_FOR_S:
                return entry[1]
            results = compute(experiment, sequential)
            self.entries[key] = (time.monotonic(), results)
            return results


_SHARED_GUARD = threading.Lock()


def _shared(request: Request) -> SharedResults:
    state = request.app.state
    with _SHARED_GUARD:
        if not hasattr(state, "experiment_shared_results"):
            state.experiment_shared_results = SharedResults()
    shared: SharedResults = state.experiment_shared_results
    return shared


def definitions_of(request: Request) -> Definitions:
    definitions: Definitions = request.app.state.experiment_definitions()
    return definitions


def results_of(request: Request, experiment: Experiment, sequential: bool) -> ExperimentResults:
    """The experiment's results as the results route computes them; 503 while the warehouse is away."""
    compute: Compute = request.app.state.experiment_compute
    try:
        return _shared(request).get(experiment, sequential, compute)
    except (WarehouseUnavailableError, TransientError) as exc:
        raise HTTPException(503, detail=str(exc), headers={"Retry-After": str(RETRY_AFTER_S)}) from None


def metrics_of(results: ExperimentResults) -> list[MetricResult]:
    """Every metric of the results, in the report's order."""
    optional = [
        results.task_duration.mean if results.task_duration else None,
        results.score,
        results.inference_failures,
    ]
    return [*results.conversion, *(metric for metric in optional if metric is not None)]


# --- rows of each panel ---------------------------------------------------------------------------


def exposure_rows(results: ExperimentResults) -> Rows:
    """Units first exposed per day and arm: ``date, variant, units``."""
    days = results.health.exposures_per_day if results.health else []
    return [{"date": day.date, "variant": arm, "units": units} for day in days for arm, units in day.units.items()]


def srm_rows(results: ExperimentResults) -> Rows:
    """The sample ratio of all units (dimension ``all``), then per dimension value, one row per arm:
    ``dimension, value, variant, units, share, expected_share, chi2, p_value, alert``."""
    rows: Rows = [
        {
            "dimension": "all",
            "value": "all",
            "variant": e.variant,
            "units": e.units,
            "share": e.share,
            "expected_share": e.expected_share,
            "chi2": results.srm.chi2,
            "p_value": results.srm.p_value,
            "alert": results.srm.alert,
        }
        for e in results.exposures
    ]
    for d in results.health.dimensions if results.health else []:
        rows += [
            {
                "dimension": d.dimension,
                "value": d.value,
                "variant": arm,
                "units": units,
                "share": d.shares.get(arm),
                "expected_share": d.expected_shares.get(arm),
                "chi2": d.chi2,
                "p_value": d.p_value,
                "alert": d.alert,
            }
            for arm, units in d.units.items()
        ]
    return rows


def contamination_rows(results: ExperimentResults) -> Rows:
    """Units seen in several arms, by reason, then in all: ``reason, units, share_of_exposed, alert``."""
    c = results.contamination
    by_reason = results.health.contaminated_by_reason if results.health else {}
    exposed = c.units_exposed

    def share(units: int) -> float | None:
        return units / exposed if exposed else None

    rows: Rows = [
        {"reason": r, "units": n, "share_of_exposed": share(n), "alert": c.alert} for r, n in by_reason.items()
    ]
    rows.append({"reason": "all", "units": c.units_in_several_variants, "share_of_exposed": c.share, "alert": c.alert})
    return rows


def contaminated_unit_rows(results: ExperimentResults) -> Rows:
    """The contaminated units the analysis lists: ``anonymous_id, reason, variants, user_ids``."""
    units = results.health.contaminated_units if results.health else []
    return [
        {
            "anonymous_id": u.anonymous_id,
            "reason": u.reason,
            "variants": ", ".join(u.variants),
            "user_ids": ", ".join(u.user_ids),
        }
        for u in units
    ]


def metric_rows(results: ExperimentResults, metric: str = "") -> Rows:
    """Every comparison of every metric (or of ``metric``): its arms' values, lift with the deciding
    interval, p-value and adjusted p-value."""
    rows: Rows = []
    for m in metrics_of(results):
        if metric and m.name != metric:
            continue
        units = {arm.variant: arm.units for arm in m.arms}
        rows += [
            {
                "metric": m.name,
                "role": m.role,
                "variant": c.variant,
                "control": c.control,
                "units_control": units.get(c.control),
                "units_variant": units.get(c.variant),
                "control_value": c.control_value,
                "variant_value": c.variant_value,
                "relative_lift": c.relative_lift,
                "lift_ci_low": c.lift_ci_low,
                "lift_ci_high": c.lift_ci_high,
                "p_value": c.p_value,
                "p_value_adjusted": c.p_value_adjusted,
                "significant": c.significant,
                "decision": c.decision,
            }
            for c in m.comparisons
        ]
    return rows


def lift_rows(results: ExperimentResults, metric: str = "", series: Series = "cumulative") -> Rows:
    """Lift over time of every metric (or of ``metric``): cumulative by day since the start, or by
    day since each unit's exposure."""
    rows: Rows = []
    for timeline in results.timeline:
        if metric and timeline.metric != metric:
            continue
        points = timeline.cumulative if series == "cumulative" else timeline.by_exposure_day
        rows += [
            {
                "metric": timeline.metric,
                "series": series,
                "variant": p.variant,
                "day": p.day,
                "date": p.date,
                "units_control": p.units.get(results.control),
                "units_variant": p.units.get(p.variant),
                "control_value": p.control_value,
                "variant_value": p.variant_value,
                "relative_lift": p.relative_lift,
                "lift_ci_low": p.lift_ci_low,
                "lift_ci_high": p.lift_ci_high,
                "p_value": p.p_value,
                "significant": p.significant,
            }
            for p in points
        ]
    return rows


def guardrail_rows(results: ExperimentResults) -> Rows:
    """Each guardrail of each variant: the tolerated harm, the lift with its interval, harmed or not."""
    comparisons = {(m.name, c.variant): c for m in metrics_of(results) for c in m.comparisons}
    rows: Rows = []
    for g in results.guardrails:
        c = comparisons.get((g.metric, g.variant))
        rows.append(
            {
                "metric": g.metric,
                "variant": g.variant,
                "control": results.control,
                "harmful": g.harmful,
                "threshold": g.threshold,
                "relative_lift": g.relative_lift,
                "lift_ci_low": c.lift_ci_low if c else None,
                "lift_ci_high": c.lift_ci_high if c else None,
                "p_value": g.p_value,
                "harmed": g.harmed,
            }
        )
    return rows


def summary_row(experiment: Experiment, results: ExperimentResults | None) -> dict[str, Any]:
    """One experiment of the list: its definition, units per arm, SRM p-value and alerts."""
    row: dict[str, Any] = {
        "key": experiment.key,
        "name": experiment.name or "",
        "status": str(experiment.status),
        "phase": experiment.phase,
        "variants": ", ".join(experiment.variant_keys),
        "primary_metric": experiment.primary_metric,
    }
    if results is None:
        return {**row, "units": None, "units_per_arm": "", "srm_p_value": None, "alerts": None, "alert_lines": ""}
    alerts = alert_lines(results)
    return {
        **row,
        "units": sum(e.units for e in results.exposures),
        "units_per_arm": ", ".join(f"{e.variant}: {e.units}" for e in results.exposures),
        "srm_p_value": results.srm.p_value,
        "alerts": len(alerts),
        "alert_lines": "; ".join(alerts),
    }


# --- charts of the panels that have no chart kind of their own ------------------------------------


def _contamination_chart(rows: Rows) -> Figure:
    reasons = [row for row in rows if row["reason"] != "all"]
    return charts.bar(
        [row["reason"] for row in reasons],
        {"units": [row["units"] for row in reasons]},
        title="Units seen in several arms",
        value_title="units",
        category_title="reason",
    )


def _contaminated_units_chart(rows: Rows) -> Figure:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["reason"]] = counts.get(row["reason"], 0) + 1
    return charts.bar(
        list(counts),
        {"listed units": list(counts.values())},
        title="Contaminated units listed",
        value_title="units",
        category_title="reason",
    )


def _guardrail_chart(rows: Rows) -> Figure:
    marked = [{**row, "significant": row["harmed"], "mark": "harmed", "p_value_adjusted": None} for row in rows]
    return charts.metric_intervals(marked, title="Guardrails")


def _lift_chart(series: Series) -> Callable[[Rows], Figure]:
    x_title = "date" if series == "cumulative" else "days since exposure"
    return lambda rows: charts.lift_timeline(rows, x_title=x_title)


def _list_chart(rows: Rows) -> Figure:
    arms = sorted({arm.split(": ")[0] for row in rows for arm in row["units_per_arm"].split(", ") if arm})
    units = [dict(arm.rsplit(": ", 1) for arm in row["units_per_arm"].split(", ") if arm) for row in rows]
    series = {arm: [int(u[arm]) if arm in u else None for u in units] for arm in arms}
    return charts.bar([row["key"] for row in rows], series, title="Units per arm", stacked=True, value_title="units")


# --- routes ---------------------------------------------------------------------------------------


Key = Annotated[str, Path(max_length=200)]
Sequential = Annotated[bool, Query(description="Confidence sequences, as the results route's sequential=true.")]
MetricName = Annotated[str, Query(max_length=200, description="one metric; default: every metric")]


def experiment_of(request: Request, key: Key) -> Experiment:
    try:
        return definitions_of(request).get(key)
    except UnknownExperimentError as exc:
        raise HTTPException(404, detail=str(exc)) from None


@router.get("/v1/experiments/overview")
def overview_route(request: Request, out: Out, sequential: Sequential = False) -> Response:
    """Every definition with its status and health (units per arm, SRM p-value, alerts); a draft is
    listed without results."""
    rows = [
        summary_row(e, None if e.status is Status.DRAFT else results_of(request, e, sequential))
        for e in definitions_of(request).experiments
    ]
    return out.respond(Answer(rows, ""), _list_chart)


@router.get("/v1/experiments/{key}/panels/{panel}")
def panel_route(
    request: Request,
    experiment: Annotated[Experiment, Depends(experiment_of)],
    panel: Panel,
    out: Out,
    sequential: Sequential = False,
    metric: MetricName = "",
    series: Series = "cumulative",
) -> Response:
    """One panel of the experiment's page, from the results route's results: rows, figure, and the
    SQL of the per-unit query the panel's figures are computed from (inlined, runnable as is)."""
    results = results_of(request, experiment, sequential)
    rows, chart_of = _PANELS[panel](results, metric, series)
    sql = inline_sql(queries.load(_SOURCE[panel]), query_parameters(experiment))
    return out.respond(
        Answer(rows, sql, {"experiment": experiment.key, "generated_at": results.generated_at}), chart_of
    )


_SOURCE = {
    "exposures": UNITS_QUERY,
    "srm": UNITS_QUERY,
    "contamination": CONTAMINATED_QUERY,
    "contaminated-units": CONTAMINATED_QUERY,
    "metrics": EVENTS_QUERY,
    "lift": EVENTS_QUERY,
    "guardrails": EVENTS_QUERY,
}
"""The query whose rows (units, or their events) each panel's figures come from."""
PanelRows = Callable[[ExperimentResults, str, Series], tuple[Rows, Callable[[Rows], Figure]]]
_PANELS: dict[str, PanelRows] = {
    "exposures": lambda r, _m, _s: (exposure_rows(r), charts.exposures_by_day),
    "srm": lambda r, _m, _s: (srm_rows(r), charts.srm_by_dimension),
    "contamination": lambda r, _m, _s: (contamination_rows(r), _contamination_chart),
    "contaminated-units": lambda r, _m, _s: (contaminated_unit_rows(r), _contaminated_units_chart),
    "metrics": lambda r, m, _s: (metric_rows(r, m), charts.metric_intervals),
    "lift": lambda r, m, s: (lift_rows(r, m, s), _lift_chart(s)),
    "guardrails": lambda r, _m, _s: (guardrail_rows(r), _guardrail_chart),
}


def experiment_list_panels() -> list[PanelLink]:
    return [PanelLink("experiments", "Experiments: status and health", "/v1/experiments/overview")]


def experiment_panels(key: str, metrics: Sequence[str] = ()) -> list[PanelLink]:
    """The experiment page's panels; with ``metrics`` (e.g. clickhouse.experiments.planning.metric_names
    of its definition) one lift-over-time panel per metric, else one with them all."""
    base = f"/v1/experiments/{_segment(key)}/panels"
    lifts = [
        PanelLink(f"lift-{index}", f"Lift over time: {name}", route(f"{base}/lift", metric=name))
        for index, name in enumerate(metrics)
    ] or [PanelLink("lift", "Lift over time", f"{base}/lift")]
    return [
        PanelLink("metrics", "Every metric: lift, interval, adjusted p-value", f"{base}/metrics"),
        *lifts,
        PanelLink("lift-by-exposure-day", "Lift by day since exposure", route(f"{base}/lift", series="exposure_day")),
        PanelLink("guardrails", "Guardrails", f"{base}/guardrails"),
        PanelLink("exposures", "Exposures per day", f"{base}/exposures"),
        PanelLink("srm", "Sample ratio by dimension", f"{base}/srm"),
        PanelLink("contamination", "Contamination", f"{base}/contamination"),
        PanelLink("contaminated-units", "Contaminated units", f"{base}/contaminated-units"),
    ]


def _segment(key: str) -> str:
    return quote(key, safe="")
