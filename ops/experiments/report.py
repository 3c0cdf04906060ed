"""Rendering of :class:`ExperimentResults`: a terminal table (rich) and a self-contained HTML page
with inline SVG charts (funnel per variant, lifts with their intervals).

Invariant: what is shown as deciding is what decided: the lift interval, p and "significant" columns
are the comparison's deciding numbers, and a row or chart interval is coloured only when
``significant``, which never holds while its lift interval covers zero.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from clickhouse.experiments.analysis import ExperimentResults, MetricResult
from clickhouse.experiments.stats import Comparison

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948")


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2e}" if value < 0.001 else f"{value:.3f}"


def _interval(low: float | None, high: float | None, fmt: str, clamped: bool = False) -> str:
    if low is None or high is None:
        return "–"
    if fmt == "pct":
        # A lift's interval stops at -100 % (see stats.compare); say so where it was cut.
        return f"[{_pct(low)}{' (floor)' if clamped else ''}, {_pct(high)}]"
    return f"[{_num(low)}, {_num(high)}]"


def _comparison_cells(c: Comparison, fmt: str) -> list[str]:
    """The deciding numbers (``c.decision``): the lift, its interval and p-value, adjusted p and the
    verdict; then the absolute difference with its own interval and p-value."""
    diff = _pct(c.difference) if fmt == "pct" else _num(c.difference)
    return [
        _pct(c.relative_lift),
        _interval(c.lift_ci_low, c.lift_ci_high, "pct", c.lift_ci_clamped),
        _p(c.p_value),
        _p(c.p_value_adjusted),
        "yes" if c.significant else "no",
        diff,
        f"{_interval(c.ci_low, c.ci_high, fmt)} p={_p(c.difference_p_value)}",
    ]


def _metric_rows(metric: MetricResult, fmt: str) -> Iterable[tuple[list[str], bool]]:
    values = {arm.variant: arm.value for arm in metric.arms}
    value = _pct if fmt == "pct" else _num
    for c in metric.comparisons:
        row = [
            metric.name,
            metric.role,
            f"{c.control}: {value(values.get(c.control))}",
            f"{c.variant}: {value(values.get(c.variant))}",
            *_comparison_cells(c, fmt),
        ]
        yield row, c.significant


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
]
SIGNIFICANT_STYLE = "bold green"
SIGNIFICANT_COLOUR = "#c0392b"
PLAIN_COLOUR = "#555"


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


def _rows(results: ExperimentResults) -> list[tuple[list[str], bool]]:
    rows: list[tuple[list[str], bool]] = []
    for metric in results.conversion:
        rows += _metric_rows(metric, "pct")
    if results.task_duration is not None:
        rows += _metric_rows(results.task_duration.mean, "num")
        for q in results.task_duration.quantiles:
            cells = [
                f"task_duration_p{int(q.quantile * 100)}_s",
                "",
                f"{q.control}: {_num(q.control_value)}",
                f"{q.variant}: {_num(q.variant_value)}",
                "",
                "",
                "",
                "",
                "",
                _num(q.difference),
                _interval(q.ci_low, q.ci_high, "num") + f" (bootstrap ×{q.resamples})",
            ]
            rows.append((cells, False))
    if results.score is not None:
        rows += _metric_rows(results.score, "num")
    return rows


def render_terminal(results: ExperimentResults, console: Console) -> None:
    console.print(f"[bold]Experiment {results.experiment_key}[/bold] — phase {results.phase}")
    console.print(f"mode: {results.mode_label}")
    console.print(_decision_note(results))
    window = f"{results.analysis_start or 'start'} → {results.analysis_end or 'now'}"
    console.print(f"window: {window}; alpha {results.alpha}")
    for alert in results.alerts:
        console.print(f"[bold red]ALERT[/bold red] {alert}")

    exposures = Table(title="Exposures (units, after exclusions)")
    for header in ("variant", "units", "share", "expected"):
        exposures.add_column(header)
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
    if results.task_duration is not None and results.task_duration.winsor_cap_s is not None:
        console.print(
            f"task durations winsorized at {_num(results.task_duration.winsor_cap_s)} s "
            f"(quantile {results.task_duration.winsor_quantile}, both arms together)"
        )

    table = Table(title="Metrics")
    for header in HEADERS:
        table.add_column(header)
    for row, significant in _rows(results):
        table.add_row(*row, style=SIGNIFICANT_STYLE if significant else None)
    console.print(table)


# --- HTML ---------------------------------------------------------------------------------------


def _funnel_svg(results: ExperimentResults) -> str:
    steps = results.conversion
    if not steps:
        return ""
    width, height, pad = 640, 260, 40
    group = (width - 2 * pad) / len(steps)
    bar = group / (len(results.variants) + 1)
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="conversion per funnel step">']
    for i, metric in enumerate(steps):
        for j, arm in enumerate(metric.arms):
            value = arm.value or 0.0
            h = value * (height - 2 * pad)
            x = pad + i * group + j * bar
            y = height - pad - h
            colour = PALETTE[j % len(PALETTE)]
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(arm.variant)} {html.escape(metric.name)}: {_pct(arm.value)}</title></rect>"
            )
        label = html.escape(metric.name.removeprefix("conversion_"))
        parts.append(
            f'<text x="{pad + i * group + group / 2 - bar / 2:.1f}" y="{height - pad + 16}" '
            f'text-anchor="middle" font-size="12">{label}</text>'
        )
    for j, variant in enumerate(results.variants):
        parts.append(
            f'<rect x="{pad + j * 110}" y="8" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{pad + j * 110 + 16}" y="19" font-size="12">{html.escape(variant)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _lift_svg(results: ExperimentResults) -> str:
    """Relative lift of every metric with its deciding interval; the zero line is 'no effect'.
    Only a significant comparison is coloured, and its interval then excludes zero."""
    items = []
    metrics = [*results.conversion]
    if results.task_duration is not None:
        metrics.append(results.task_duration.mean)
    if results.score is not None:
        metrics.append(results.score)
    for metric in metrics:
        for c in metric.comparisons:
            low, high = c.lift_ci_low, c.lift_ci_high
            if c.relative_lift is not None and low is not None and high is not None:
                items.append((f"{metric.name} ({c.variant})", c.relative_lift, low, high, c.significant))
    if not items:
        return ""
    span = max(max(abs(low), abs(high)) for _, _, low, high, _ in items) or 1.0
    width, row, left = 640, 26, 230
    height = row * len(items) + 30
    scale = (width - left - 20) / (2 * span)
    zero = left + span * scale
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="relative lift with intervals">',
        f'<line x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{height - 20}" stroke="#999" stroke-dasharray="4"/>',
    ]
    for i, (label, lift, low, high, significant) in enumerate(items):
        y = 16 + i * row
        colour = SIGNIFICANT_COLOUR if significant else PLAIN_COLOUR
        parts.append(f'<text x="4" y="{y + 4}" font-size="12">{html.escape(label)}</text>')
        parts.append(
            f'<line x1="{left + (low + span) * scale:.1f}" y1="{y}" x2="{left + (high + span) * scale:.1f}" '
            f'y2="{y}" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(
            f'<circle cx="{left + (lift + span) * scale:.1f}" cy="{y}" r="4" fill="{colour}">'
            f"<title>{_pct(lift)} [{_pct(low)}, {_pct(high)}]</title></circle>"
        )
    parts.append(
        f'<text x="{zero:.1f}" y="{height - 6}" font-size="11" text-anchor="middle">0 (±{_pct(span, 0)} shown)</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def render_html(results: ExperimentResults) -> str:
    esc = html.escape
    alerts = "".join(f'<p class="alert">ALERT: {esc(a)}</p>' for a in results.alerts)
    exposure_rows = "".join(
        f"<tr><td>{esc(r.variant)}</td><td>{r.units}</td><td>{_pct(r.share)}</td><td>{_pct(r.expected_share)}</td></tr>"
        for r in results.exposures
    )
    metric_rows = "".join(
        ('<tr class="significant">' if significant else "<tr>")
        + "".join(f"<td>{esc(cell)}</td>" for cell in row)
        + "</tr>"
        for row, significant in _rows(results)
    )
    srm, c = results.srm, results.contamination
    cap = ""
    if results.task_duration is not None and results.task_duration.winsor_cap_s is not None:
        cap = (
            f"<p>Task durations winsorized at {_num(results.task_duration.winsor_cap_s)} s "
            f"(quantile {results.task_duration.winsor_quantile}, both arms together).</p>"
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
tr.significant td {{ color: {SIGNIFICANT_COLOUR}; font-weight: bold; }}
svg {{ max-width: 100%; border: 1px solid #eee; margin: 1rem 0; }}
</style></head><body>
<h1>Experiment {esc(results.experiment_key)} — phase {results.phase}</h1>
<p class="mode">{esc(results.mode_label)}</p>
<p class="decision">{esc(_decision_note(results))}</p>
<p>Window: {esc(str(results.analysis_start or "start"))} → {esc(str(results.analysis_end or "now"))};
alpha {results.alpha}; generated {esc(results.generated_at.isoformat())}.</p>
{alerts}
<h2>Exposures</h2>
<table><tr><th>variant</th><th>units</th><th>share</th><th>expected</th></tr>{exposure_rows}</table>
<p>Sample ratio: chi-square {_num(srm.chi2)}, p = {_p(srm.p_value)} ({"MISMATCH" if srm.alert else "ok"}).
Units seen in several variants: {c.units_in_several_variants} of {c.units_exposed} ({_pct(c.share, 2)}), excluded.</p>
<h2>Conversion per funnel step</h2>
{_funnel_svg(results)}
<h2>Relative lift</h2>
{_lift_svg(results)}
{cap}
<h2>Metrics</h2>
<table><tr>{"".join(f"<th>{h}</th>" for h in HEADERS)}</tr>{metric_rows}</table>
</body></html>
"""
