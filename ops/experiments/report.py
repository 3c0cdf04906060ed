"""Rendering of :class:`ExperimentResults`: narrow terminal tables (rich, 80 columns) and a
self-contained HTML page (works offline: Plotly inline once) with the workspace's charts (funnel,
lifts, lift over time, exposures, sample ratio) and health tables.

Invariant: what is shown as deciding is what decided: lift interval, p and "significant" are the
comparison's deciding numbers; a row is coloured and a chart point filled only when ``significant``,
which never holds while its lift interval covers zero. Every value in the HTML is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from clickhouse.experiments.analysis import ExperimentResults, MetricResult
from clickhouse.experiments.monitor import alert_lines
from clickhouse.experiments.results import Health, Progress
from clickhouse.experiments.stats import Comparison
from clickhouse.workspace import charts
from clickhouse.workspace.answers import Rows
from clickhouse.workspace.experiment_routes import exposure_rows, lift_rows, metric_rows, srm_rows

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948")
SIGNIFICANT_STYLE = "bold green"
HARMED_STYLE = "bold red"
SIGNIFICANT_COLOUR = "#c0392b"
FLOOR_NOTE = "* the lift interval stops at -100 % (a metric cannot fall below zero)"
BAYESIAN_NOTE = (
    "Chance to win: posterior probability that the variant beats the control in the metric's good "
    "direction; expected loss: the relative loss expected if it is shipped and does not."
)
PROGRESS_BAR_CELLS = 30

Format = Callable[[float | None], str]


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    # Two significant digits below 0.001 keep the column narrow; the JSON has every digit.
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def _interval(low: float | None, high: float | None, fmt: Format, clamped: bool = False) -> str:
    if low is None or high is None:
        return "–"
    # A lift's interval stops at -100 % (see stats.compare); the star refers to FLOOR_NOTE.
    return f"[{fmt(low)}{'*' if clamped else ''}, {fmt(high)}]"


def _narrower(variance_reduction: float) -> float:
    """How much narrower the interval is: its width goes with the standard error."""
    return 1 - float(max(0.0, 1 - variance_reduction) ** 0.5)


def _all_metrics(results: ExperimentResults) -> list[MetricResult]:
    metrics = [*results.conversion]
    if results.task_duration is not None:
        metrics.append(results.task_duration.mean)
    if results.score is not None:
        metrics.append(results.score)
    if results.inference_failures is not None:
        metrics.append(results.inference_failures)
    return metrics


def _format_of(metric: MetricResult) -> Format:
    return _pct if metric.name.startswith("conversion_") or metric.name.endswith("_rate") else _num


def _comparisons(results: ExperimentResults, variant: str) -> Iterable[tuple[MetricResult, Comparison]]:
    for metric in _all_metrics(results):
        for c in metric.comparisons:
            if c.variant == variant:
                yield metric, c


def _decision_note(results: ExperimentResults) -> str:
    """Which numbers the lift CI, p and significant columns are, and how significant is decided."""
    basis = (
        "confidence sequence (valid at every look); fixed-horizon numbers are in the JSON's fixed_horizon"
        if results.mode == "sequential"
        else "fixed-horizon Welch t-test"
    )
    return (
        f"lift CI, p and significant: {basis}. Significant: p < {results.alpha} for the primary metric and "
        f"guardrails; for secondary metrics, p adjusted for all secondary comparisons together < {results.alpha}. "
        "The difference has its own test (its p), which may disagree with the lift's."
    )


def _progress_text(progress: Progress) -> tuple[str, str]:
    """The bar with its share, and the line that says what the sample is planned for."""
    share = progress.share
    filled = round(min(share or 0.0, 1.0) * PROGRESS_BAR_CELLS)
    bar = "█" * filled + "░" * (PROGRESS_BAR_CELLS - filled)
    required = "unknown" if progress.required_units is None else f"{progress.required_units:,}"
    remaining = ""
    if progress.days_remaining is not None:
        rate = "" if progress.units_per_day is None else f" at {progress.units_per_day:,.0f} units/day"
        remaining = f"; ~{progress.days_remaining:,.1f} days to go{rate}"
    head = f"progress {bar} {_pct(share, 0)} ({progress.units:,} of {required} units){remaining}"
    plan = (
        f"planned: MDE {_pct(progress.mde)} of {progress.metric} at power {progress.power}; "
        f"{progress.days_elapsed:,.1f} days elapsed"
    )
    return head, plan


# --- terminal ---------------------------------------------------------------------------------


def _table(title: str, headers: Sequence[str]) -> Table:
    """A table without side borders or doubled padding, so several fit an 80-column terminal;
    cells never wrap, so a table too wide shows as a cut cell (the tests check there is none)."""
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def _values_table(results: ExperimentResults) -> Table:
    table = _table("Values per arm", ["metric", "role", *results.variants])
    for metric in _all_metrics(results):
        fmt = _format_of(metric)
        values = {arm.variant: arm.value for arm in metric.arms}
        table.add_row(metric.name, metric.role, *(fmt(values.get(v)) for v in results.variants))
    if results.task_duration is not None:
        quantiles: dict[float, dict[str, float | None]] = {}
        for q in results.task_duration.quantiles:
            # The control's quantile repeats in every comparison; each variant's comes once.
            quantiles.setdefault(q.quantile, {q.control: q.control_value})[q.variant] = q.variant_value
        for quantile, values in quantiles.items():
            cells = (_num(values.get(v)) for v in results.variants)
            table.add_row(f"task_duration_p{int(quantile * 100)}_s", "", *cells)
    return table


def _lift_table(results: ExperimentResults, variant: str) -> Table:
    table = _table(f"Relative lift: {variant} vs {results.control}", ["metric", "lift", "lift CI", "p", "p adj", "sig"])
    for metric, c in _comparisons(results, variant):
        table.add_row(
            metric.name,
            _pct(c.relative_lift),
            _interval(c.lift_ci_low, c.lift_ci_high, _pct, c.lift_ci_clamped),
            _p(c.p_value),
            _p(c.p_value_adjusted),
            "yes" if c.significant else "no",
            style=SIGNIFICANT_STYLE if c.significant else None,
        )
    return table


def _difference_table(results: ExperimentResults, variant: str) -> Table:
    table = _table(
        f"Absolute difference: {variant} - {results.control}", ["metric", "difference", "difference CI", "its p"]
    )
    for metric, c in _comparisons(results, variant):
        fmt = _format_of(metric)
        table.add_row(metric.name, fmt(c.difference), _interval(c.ci_low, c.ci_high, fmt), _p(c.difference_p_value))
    if results.task_duration is not None:
        for q in results.task_duration.quantiles:
            if q.variant == variant:
                table.add_row(
                    f"task_duration_p{int(q.quantile * 100)}_s",
                    _num(q.difference),
                    _interval(q.ci_low, q.ci_high, _num),
                    f"boot ×{q.resamples}",
                )
    return table


def _cuped_table(results: ExperimentResults, variant: str) -> Table | None:
    rows = [(m, c.cuped) for m, c in _comparisons(results, variant) if c.cuped is not None]
    if not rows:
        return None
    lookback = results.cuped_lookback_days or rows[0][1].lookback_days
    table = _table(
        f"CUPED ({lookback}-day pre-period): {variant} vs {results.control}",
        ["metric", "variance cut", "CI narrower", "unadjusted lift", "pre units"],
    )
    for metric, cuped in rows:
        cut, narrower = "not applied", "–"
        if cuped.applied and cuped.variance_reduction is not None:
            cut, narrower = _pct(cuped.variance_reduction), _pct(_narrower(cuped.variance_reduction))
        lift = _pct(cuped.unadjusted_relative_lift)
        table.add_row(metric.name, cut, narrower, lift, f"{cuped.units_with_pre_period:,}")
    return table


def _bayesian_table(results: ExperimentResults, variant: str) -> Table | None:
    rows = [(m, c.bayesian) for m, c in _comparisons(results, variant) if c.bayesian is not None]
    if not rows:
        return None
    table = _table(
        f"Bayesian: {variant} vs {results.control}",
        ["metric", "chance to win", "expected loss", "credible interval"],
    )
    for metric, bayes in rows:
        table.add_row(
            metric.name,
            _pct(bayes.chance_to_beat_control),
            _pct(bayes.expected_loss, 2),
            _interval(bayes.lift_ci_low, bayes.lift_ci_high, _pct),
        )
    return table


def _guardrail_table(results: ExperimentResults) -> Table | None:
    if not results.guardrails:
        return None
    table = _table("Guardrails", ["metric", "variant", "harmful", "tolerated", "lift", "p", "status"])
    for g in results.guardrails:
        table.add_row(
            g.metric,
            g.variant,
            g.harmful,
            _pct(g.threshold),
            _pct(g.relative_lift),
            _p(g.p_value),
            "HARMED" if g.harmed else "ok",
            style=HARMED_STYLE if g.harmed else None,
        )
    return table


def _health_tables(health: Health, variants: list[str]) -> list[Table | str]:
    out: list[Table | str] = []
    alerting = [d for d in health.dimensions if d.alert]
    checked = f"sample ratio by dimension: {len(health.dimensions)} values checked, {len(alerting)} mismatched"
    out.append(checked)
    if alerting:
        table = _table("Sample ratio mismatch by dimension", ["dimension", "value", *variants, "p"])
        for d in alerting:
            table.add_row(
                d.dimension, d.value, *(f"{d.units.get(v, 0):,}" for v in variants), _p(d.p_value), style=HARMED_STYLE
            )
        out.append(table)
    if health.contaminated_by_reason:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(health.contaminated_by_reason.items()))
        out.append(f"units in several arms, by reason: {reasons} (listed in the HTML report and the API)")
    return out


def render_terminal(results: ExperimentResults, console: Console) -> None:
    console.print(f"[bold]Experiment {results.experiment_key}[/bold] — phase {results.phase}")
    console.print(f"mode: {results.mode_label}")
    console.print(_decision_note(results))
    window = f"{results.analysis_start or 'start'} → {results.analysis_end or 'now'}"
    console.print(f"window: {window}; alpha {results.alpha}")
    for alert in alert_lines(results):
        console.print(f"[bold red]ALERT[/bold red] {alert}", markup=True, highlight=False)
    if results.progress is not None:
        for line in _progress_text(results.progress):
            console.print(line, highlight=False)

    exposures = _table("Exposures", ["variant", "clean units", "share", "expected"])
    for exposure in results.exposures:
        exposures.add_row(exposure.variant, str(exposure.units), _pct(exposure.share), _pct(exposure.expected_share))
    console.print(exposures)
    srm = results.srm
    console.print(
        f"sample ratio: chi-square {_num(srm.chi2)}, p = {_p(srm.p_value)} "
        f"({'MISMATCH' if srm.alert else 'ok'}; alert below {srm.threshold})"
    )
    c = results.contamination
    console.print(
        f"units seen in several variants: {c.units_in_several_variants} of {c.units_exposed} "
        f"({_pct(c.share, 2)}; excluded; alert above {_pct(c.threshold, 0)})"
    )
    if results.health is not None:
        for part in _health_tables(results.health, results.variants):
            console.print(part)
    if results.task_duration is not None and results.task_duration.winsor_cap_s is not None:
        console.print(
            f"task durations winsorized at {_num(results.task_duration.winsor_cap_s)} s "
            f"(quantile {results.task_duration.winsor_quantile}, both arms together)"
        )

    guardrails = _guardrail_table(results)
    if guardrails is not None:
        console.print(guardrails)
    console.print(_values_table(results))
    clamped = False
    for variant in results.variants[1:]:
        console.print(_lift_table(results, variant))
        clamped |= any(c.lift_ci_clamped for _, c in _comparisons(results, variant))
        console.print(_difference_table(results, variant))
        for extra in (_cuped_table(results, variant), _bayesian_table(results, variant)):
            if extra is not None:
                console.print(extra)
    if clamped:
        console.print(FLOOR_NOTE)
    if any(c.bayesian is not None for metric in _all_metrics(results) for c in metric.comparisons):
        console.print(BAYESIAN_NOTE + (f" Prior: {results.bayesian_prior}." if results.bayesian_prior else ""))


# --- HTML ---------------------------------------------------------------------------------------

HEADERS = [
    "metric",
    "role",
    "control",
    "variant",
    "relative lift",
    "lift CI",
    "p",
    "p adjusted",
    "significant",
    "difference",
    "difference CI (its p)",
    "CUPED variance reduction",
    "chance to beat control",
    "expected loss",
]


def _html_metric_rows(results: ExperimentResults) -> list[tuple[list[str], bool]]:
    rows: list[tuple[list[str], bool]] = []
    for metric in _all_metrics(results):
        fmt = _format_of(metric)
        values = {arm.variant: arm.value for arm in metric.arms}
        for c in metric.comparisons:
            cuped = c.cuped
            reduction = _pct(cuped.variance_reduction) if cuped is not None and cuped.applied else "–"
            bayes = c.bayesian
            row = [
                metric.name,
                metric.role,
                f"{c.control}: {fmt(values.get(c.control))}",
                f"{c.variant}: {fmt(values.get(c.variant))}",
                _pct(c.relative_lift),
                _interval(c.lift_ci_low, c.lift_ci_high, _pct, c.lift_ci_clamped),
                _p(c.p_value),
                _p(c.p_value_adjusted),
                "yes" if c.significant else "no",
                fmt(c.difference),
                f"{_interval(c.ci_low, c.ci_high, fmt)} p={_p(c.difference_p_value)}",
                reduction,
                _pct(bayes.chance_to_beat_control) if bayes else "–",
                _pct(bayes.expected_loss, 2) if bayes else "–",
            ]
            rows.append((row, c.significant))
    if results.task_duration is not None:
        for q in results.task_duration.quantiles:
            cells = [
                f"task_duration_p{int(q.quantile * 100)}_s",
                "",
                f"{q.control}: {_num(q.control_value)}",
                f"{q.variant}: {_num(q.variant_value)}",
                *[""] * 5,
                _num(q.difference),
                _interval(q.ci_low, q.ci_high, _num) + f" (bootstrap ×{q.resamples})",
                *[""] * 3,
            ]
            rows.append((cells, False))
    return rows


def _table_html(headers: Sequence[str], rows: Iterable[Sequence[object]], classes: Iterable[str] = ()) -> str:
    """A table whose every header and cell is escaped; ``classes`` gives each row's class ('' none)."""
    esc = html.escape
    row_classes = iter(classes)
    body = []
    for row in rows:
        cls = next(row_classes, "")
        opening = f'<tr class="{esc(cls)}">' if cls else "<tr>"
        body.append(opening + "".join(f"<td>{esc(str(cell))}</td>" for cell in row) + "</tr>")
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _funnel_chart(results: ExperimentResults) -> str:
    steps = results.conversion
    if not steps:
        return ""
    values = [{arm.variant: arm.value for arm in metric.arms} for metric in steps]
    figure = charts.bar(
        [metric.name.removeprefix("conversion_") for metric in steps],
        {variant: [step.get(variant) for step in values] for variant in results.variants},
        title="Conversion per funnel step",
        percent=True,
        value_title="conversion",
    )
    return charts.embed(figure, "experiment-funnel")


def _lift_chart(results: ExperimentResults) -> str:
    """Relative lift of every metric with its deciding interval; the dotted line is 'no effect'.
    Only a significant comparison is a filled point, and its interval then excludes zero."""
    rows = [
        row
        for row in metric_rows(results)
        if row["relative_lift"] is not None and row["lift_ci_low"] is not None and row["lift_ci_high"] is not None
    ]
    return charts.embed(charts.metric_intervals(rows), "experiment-lift") if rows else ""


def _timeline_chart(rows: Rows, title: str, x_title: str, div_id: str) -> str:
    """The lift per day with its interval as a band; the dotted line is zero (no effect). A point is
    filled only when significant on that day."""
    drawn = [row for row in rows if row["relative_lift"] is not None]
    return charts.embed(charts.lift_timeline(drawn, x_title=x_title, title=title), div_id) if drawn else ""


def _timeline_html(results: ExperimentResults) -> str:
    pairs = []
    for index, timeline in enumerate(results.timeline):
        cumulative = lift_rows(results, timeline.metric, "cumulative")
        by_day = lift_rows(results, timeline.metric, "exposure_day")
        for position, variant in enumerate(results.variants[1:], start=1):
            name = f"{timeline.metric} ({variant} vs {results.control})"
            div_id = f"lift-{index}-{position}"
            pair = (
                _timeline_chart(
                    [row for row in cumulative if row["variant"] == variant],
                    f"cumulative lift of {name}",
                    "date",
                    f"{div_id}-cumulative",
                ),
                _timeline_chart(
                    [row for row in by_day if row["variant"] == variant],
                    f"lift by day of exposure of {name}",
                    "days since first exposure",
                    f"{div_id}-by-day",
                ),
            )
            if any(pair):
                pairs.append(f'<div class="pair">{"".join(pair)}</div>')
    body = "".join(pairs)
    if not body:
        return ""
    return (
        "<h2>Lift over time</h2><p>Cumulative: every unit exposed and every event up to each day's end, with "
        "the interval as a band. By day of exposure: each unit's events on its k-th day; a lift that shrinks "
        f"with k is a novelty effect.</p>{body}"
    )


def _progress_html(progress: Progress | None) -> str:
    if progress is None:
        return ""
    head, plan = _progress_text(progress)
    width = min(max(progress.share or 0.0, 0.0), 1.0) * 100
    return (
        '<h2>Progress</h2><div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{width:.0f}"><div style="width: {width:.1f}%"></div></div>'
        f"<p>{html.escape(head.split(' ', 2)[-1])}. {html.escape(plan)}.</p>"
    )


def _guardrails_html(results: ExperimentResults) -> str:
    if not results.guardrails:
        return ""
    rows = [
        [
            g.metric,
            g.variant,
            g.harmful,
            _pct(g.threshold),
            _pct(g.relative_lift),
            _p(g.p_value),
            "HARMED" if g.harmed else "ok",
        ]
        for g in results.guardrails
    ]
    classes = ["harmed" if g.harmed else "" for g in results.guardrails]
    headers = ["metric", "variant", "harmful direction", "tolerated", "relative lift", "p (one-sided)", "status"]
    return "<h2>Guardrails</h2>" + _table_html(headers, rows, classes)


def _health_html(results: ExperimentResults) -> str:
    health = results.health
    if health is None:
        return ""
    variants = results.variants
    parts = ["<h2>Health</h2>"]
    if health.dimensions:
        rows = [
            [
                d.dimension,
                d.value,
                *(f"{d.units.get(v, 0):,} ({_pct(d.shares.get(v))})" for v in variants),
                _num(d.chi2),
                _p(d.p_value),
                "MISMATCH" if d.alert else "ok",
            ]
            for d in health.dimensions
        ]
        classes = ["harmed" if d.alert else "" for d in health.dimensions]
        headers = ["dimension", "value", *(f"{v} units (share)" for v in variants), "chi-square", "p", "check"]
        chart = charts.embed(charts.srm_by_dimension(srm_rows(results)), "experiment-srm")
        parts.append("<h3>Sample ratio per dimension value</h3>" + chart + _table_html(headers, rows, classes))
    if health.exposures_per_day:
        rows = [[str(day.date), *(f"{day.units.get(v, 0):,}" for v in variants)] for day in health.exposures_per_day]
        chart = charts.embed(charts.exposures_by_day(exposure_rows(results)), "experiment-exposures")
        parts.append("<h3>Units first exposed per day</h3>" + chart + _table_html(["date", *variants], rows))
    if health.contaminated_by_reason or health.contaminated_units:
        reasons = ", ".join(f"{r}: {n:,}" for r, n in sorted(health.contaminated_by_reason.items())) or "none"
        parts.append(f"<h3>Units seen in several arms</h3><p>By reason: {html.escape(reasons)}.")
        if health.contaminated_units:
            parts.append("</p>")
            rows = [
                [u.anonymous_id, u.reason, ", ".join(u.variants), ", ".join(u.user_ids)]
                for u in health.contaminated_units
            ]
            listed = f"{len(rows):,} listed (at most {health.contaminated_units_listed_limit:,})"
            table = _table_html(["anonymous_id", "reason", "variants", "user ids"], rows)
            parts.append(f"<details><summary>{listed}</summary>{table}</details>")
        else:
            parts.append("</p>")
    return "".join(parts)


def _cuped_html(results: ExperimentResults) -> str:
    rows = []
    for metric in _all_metrics(results):
        for c in metric.comparisons:
            cuped = c.cuped
            if cuped is None:
                continue
            narrower = (
                _pct(_narrower(cuped.variance_reduction))
                if cuped.applied and cuped.variance_reduction is not None
                else "–"
            )
            rows.append(
                [
                    metric.name,
                    c.variant,
                    "yes" if cuped.applied else "no (no pre-period data)",
                    _pct(cuped.variance_reduction) if cuped.applied else "–",
                    narrower,
                    _num(cuped.theta, 4),
                    f"{cuped.units_with_pre_period:,}",
                    _pct(cuped.unadjusted_relative_lift),
                    _interval(cuped.unadjusted_lift_ci_low, cuped.unadjusted_lift_ci_high, _pct),
                ]
            )
    if not rows:
        return ""
    lookback = f" ({results.cuped_lookback_days}-day pre-period)" if results.cuped_lookback_days else ""
    headers = [
        "metric",
        "variant",
        "applied",
        "variance reduction",
        "interval narrower by",
        "theta",
        "units with pre-period data",
        "unadjusted lift",
        "unadjusted lift CI",
    ]
    return f"<h2>Regression adjustment (CUPED){html.escape(lookback)}</h2>" + _table_html(headers, rows)


def _bayesian_html(results: ExperimentResults) -> str:
    rows = []
    for metric in _all_metrics(results):
        for c in metric.comparisons:
            b = c.bayesian
            if b is not None:
                rows.append(
                    [
                        metric.name,
                        c.variant,
                        _pct(b.chance_to_beat_control),
                        _pct(b.expected_loss, 2),
                        _pct(b.control_expected_loss, 2),
                        _pct(b.lift_mean),
                        _interval(b.lift_ci_low, b.lift_ci_high, _pct),
                    ]
                )
    if not rows:
        return ""
    headers = [
        "metric",
        "variant",
        "chance to beat control",
        "expected loss (ship)",
        "expected loss (keep control)",
        "lift (posterior mean)",
        "credible interval",
    ]
    prior = f"<p>Prior: {html.escape(results.bayesian_prior)}.</p>" if results.bayesian_prior else ""
    return "<h2>Bayesian view</h2>" + prior + _table_html(headers, rows)


def render_html(results: ExperimentResults) -> str:
    esc = html.escape
    alerts = "".join(f'<p class="alert">ALERT: {esc(a)}</p>' for a in alert_lines(results))
    exposures = _table_html(
        ["variant", "units", "share", "expected"],
        [[r.variant, r.units, _pct(r.share), _pct(r.expected_share)] for r in results.exposures],
    )
    metric_rows = _html_metric_rows(results)
    metrics = _table_html(
        HEADERS, [row for row, _ in metric_rows], ["significant" if sig else "" for _, sig in metric_rows]
    )
    clamped = any(c.lift_ci_clamped for metric in _all_metrics(results) for c in metric.comparisons)
    floor_note = f"<p>{esc(FLOOR_NOTE)}</p>" if clamped else ""
    srm, c = results.srm, results.contamination
    cap = ""
    if results.task_duration is not None and results.task_duration.winsor_cap_s is not None:
        cap = (
            f"<p>Task durations winsorized at {esc(_num(results.task_duration.winsor_cap_s))} s "
            f"(quantile {esc(str(results.task_duration.winsor_quantile))}, both arms together).</p>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment {esc(results.experiment_key)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; font-size: 13px; }}
th {{ background: #f4f4f4; }}
.alert {{ color: #fff; background: #c0392b; padding: 6px 10px; }}
.mode {{ background: #eef; padding: 6px 10px; }}
.bar {{ background: #eee; height: 18px; width: 100%; max-width: 640px; }}
.bar div {{ background: {PALETTE[2]}; height: 100%; }}
tr.significant td {{ color: {SIGNIFICANT_COLOUR}; font-weight: bold; }}
tr.harmed td {{ background: #fdecea; color: {SIGNIFICANT_COLOUR}; font-weight: bold; }}
.chart {{ min-height: 320px; border: 1px solid #eee; margin: 1rem 0; }}
.pair {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }}
.pair .chart {{ min-width: 0; }}
</style>
{charts.plotly_script()}
</head><body>
<h1>Experiment {esc(results.experiment_key)} — phase {esc(str(results.phase))}</h1>
<p class="mode">{esc(results.mode_label)}</p>
<p class="decision">{esc(_decision_note(results))}</p>
<p>Window: {esc(str(results.analysis_start or "start"))} → {esc(str(results.analysis_end or "now"))};
alpha {esc(str(results.alpha))}; generated {esc(results.generated_at.isoformat())}.</p>
{alerts}
{_progress_html(results.progress)}
<h2>Exposures</h2>
{exposures}
<p>Sample ratio: chi-square {esc(_num(srm.chi2))}, p = {esc(_p(srm.p_value))} ({"MISMATCH" if srm.alert else "ok"}).
Units seen in several variants: {c.units_in_several_variants:,} of {c.units_exposed:,} ({esc(_pct(c.share, 2))}),
excluded.</p>
{_health_html(results)}
{_guardrails_html(results)}
<h2>Conversion per funnel step</h2>
{_funnel_chart(results)}
<h2>Relative lift</h2>
{_lift_chart(results)}
{_timeline_html(results)}
{cap}
<h2>Metrics</h2>
{metrics}
{floor_note}
{_cuped_html(results)}
{_bayesian_html(results)}
</body></html>
"""
