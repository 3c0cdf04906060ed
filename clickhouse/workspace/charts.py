"""Plotly figures of the workspace and the static reports: pure functions from rows to a figure dict.

Owns the look every chart shares (a colour-blind safe palette, system fonts, no Plotly logo), the
generic builders (``bar``, ``lines``, ``band``, ``interval``), one builder per panel kind, the bundled
library text (``plotly_js``) and its inline embedding for offline HTML (``embed``).
Invariant: every data string placed in a figure is HTML-escaped (Plotly renders a subset of HTML in
labels, and values such as variant names come from clients), and every value is a plain JSON type.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from itertools import pairwise
from typing import Any

import orjson

from clickhouse.workspace.answers import Figure, Rows

Trace = dict[str, Any]

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe–Ito: told apart under the common colour-vision deficiencies; yellow and black come last."""

CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}
_FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 13, "color": "#222"}


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def text(value: Any) -> str:
    """A data value as label text: escaped, so Plotly shows it and never interprets it."""
    return html.escape("" if value is None else str(value))


def number(value: Any) -> float | None:
    """A plain float for a figure (Decimal, numpy scalars, bools...); None for missing or not finite."""
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def moment(value: Any) -> str:
    """A time value as Plotly reads a date axis: ``YYYY-MM-DD HH:MM:SS[.ffffff]`` in UTC, no zone."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return str(value.isoformat(sep=" "))
    if isinstance(value, date):
        return value.isoformat()
    return text(value)


def layout(
    title: str = "",
    *,
    x_title: str = "",
    y_title: str = "",
    x_percent: bool = False,
    y_percent: bool = False,
    x_type: str | None = None,
    y_type: str | None = None,
    height: int | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The common layout; ``title`` and axis titles are our own text, escaped all the same."""
    x_axis: dict[str, Any] = {"title": {"text": text(x_title)}, "automargin": True, "zeroline": False}
    y_axis: dict[str, Any] = {"title": {"text": text(y_title)}, "automargin": True, "zeroline": False}
    for axis, percent, kind in ((x_axis, x_percent, x_type), (y_axis, y_percent, y_type)):
        if percent:
            axis["tickformat"] = ".0%"
        if kind:
            axis["type"] = kind
    result: dict[str, Any] = {
        "title": {"text": text(title), "x": 0, "xanchor": "left"},
        "font": _FONT,
        "paper_bgcolor": "#fff",
        "plot_bgcolor": "#fff",
        "colorway": list(PALETTE),
        "xaxis": x_axis | {"gridcolor": "#e5e5e5"},
        "yaxis": y_axis | {"gridcolor": "#e5e5e5"},
        # Below everything, so a long legend never covers the x axis title.
        "legend": {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom"},
        "margin": {"l": 60, "r": 20, "t": 50 if title else 20, "b": 90},
        "hoverlabel": {"namelength": -1},
    }
    if height is not None:
        result["height"] = height
    result.update(more)
    return result


def figure(traces: Iterable[Trace], figure_layout: dict[str, Any]) -> Figure:
    """``{"data", "layout", "config"}``: what ``Plotly.react(div, figure)`` takes."""
    return {"data": list(traces), "layout": figure_layout, "config": dict(CONFIG)}


def bar_trace(
    name: Any,
    categories: Sequence[Any],
    values: Sequence[Any],
    *,
    index: int = 0,
    horizontal: bool = False,
    percent: bool = False,
    hover: Sequence[Any] | None = None,
) -> Trace:
    """One series of bars; ``categories`` are data (escaped), ``hover`` extra data text per bar."""
    labels = [text(category) for category in categories]
    numbers = [number(value) for value in values]
    value_format = ".1%" if percent else ",.3~f"
    axis_value, axis_label = ("x", "y") if horizontal else ("y", "x")
    trace: Trace = {
        "type": "bar",
        "name": text(name),
        axis_label: labels,
        axis_value: numbers,
        "marker": {"color": color(index)},
        "texttemplate": f"%{{{axis_value}:{value_format}}}",
        "textposition": "auto",
        "hovertemplate": f"%{{{axis_label}}}: %{{{axis_value}:{value_format}}}",
    }
    if horizontal:
        trace["orientation"] = "h"
    if hover is not None:
        trace["customdata"] = [text(item) for item in hover]
        trace["hovertemplate"] += "<br>%{customdata}"
    trace["hovertemplate"] += f"<extra>{text(name)}</extra>"
    return trace


def bar(
    categories: Sequence[Any],
    series: Mapping[Any, Sequence[Any]],
    *,
    title: str = "",
    horizontal: bool = False,
    percent: bool = False,
    value_title: str = "",
    category_title: str = "",
    stacked: bool = False,
) -> Figure:
    """Grouped (or stacked) bars: one bar per category per series; a missing value is None."""
    traces = [
        bar_trace(name, categories, values, index=index, horizontal=horizontal, percent=percent)
        for index, (name, values) in enumerate(series.items())
    ]
    if horizontal:
        bars_layout = layout(title, x_title=value_title, y_title=category_title, x_percent=percent, y_type="category")
        # Top to bottom in the order given, as a table reads.
        bars_layout["yaxis"]["autorange"] = "reversed"
    else:
        bars_layout = layout(title, x_title=category_title, y_title=value_title, y_percent=percent, x_type="category")
    bars_layout.update(barmode="stack" if stacked else "group", showlegend=len(traces) > 1)
    return figure(traces, bars_layout)


def line_trace(
    name: Any,
    x: Sequence[Any],
    y: Sequence[Any],
    *,
    index: int = 0,
    percent: bool = False,
    dash: str = "solid",
    show_legend: bool = True,
    group: str | None = None,
) -> Trace:
    """One line with markers; ``x`` times or numbers, ``y`` numbers (None leaves a gap)."""
    value_format = ".1%" if percent else ",.3~f"
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": text(name),
        "x": [moment(value) if isinstance(value, date) else _plain(value) for value in x],
        "y": [number(value) for value in y],
        "line": {"color": color(index), "dash": dash},
        "marker": {"color": color(index), "size": 6},
        "legendgroup": group if group is not None else text(name),
        "showlegend": show_legend,
        "hovertemplate": f"%{{x}}: %{{y:{value_format}}}<extra>{text(name)}</extra>",
    }


def lines(
    x: Sequence[Any],
    series: Mapping[Any, Sequence[Any]],
    *,
    title: str = "",
    percent: bool = False,
    x_title: str = "",
    y_title: str = "",
) -> Figure:
    """One line per series over the same ``x``."""
    traces = [
        line_trace(name, x, values, index=index, percent=percent) for index, (name, values) in enumerate(series.items())
    ]
    return figure(traces, layout(title, x_title=x_title, y_title=y_title, y_percent=percent))


def band(
    name: Any, x: Sequence[Any], low: Sequence[Any], high: Sequence[Any], *, index: int = 0, percent: bool = False
) -> list[Trace]:
    """A shaded interval between ``low`` and ``high`` (two traces: the lower edge, then the fill to it)."""
    xs = [moment(value) if isinstance(value, date) else _plain(value) for value in x]
    value_format = ".1%" if percent else ",.3~f"
    edge: Trace = {
        "type": "scatter",
        "mode": "lines",
        "x": xs,
        "line": {"width": 0, "color": color(index)},
        "legendgroup": text(name),
        "showlegend": False,
        "hoverinfo": "skip",
    }
    return [
        edge | {"name": text(name) + " low", "y": [number(value) for value in low]},
        edge
        | {
            "name": text(name),
            "y": [number(value) for value in high],
            "fill": "tonexty",
            "fillcolor": _translucent(color(index)),
            "hovertemplate": f"%{{x}}: up to %{{y:{value_format}}}<extra>{text(name)}</extra>",
            "hoverinfo": "all",
        },
    ]


def interval(
    name: Any,
    labels: Sequence[Any],
    estimates: Sequence[Any],
    lows: Sequence[Any],
    highs: Sequence[Any],
    *,
    index: int = 0,
    percent: bool = False,
    hover: Sequence[Any] | None = None,
) -> Trace:
    """Point estimates with horizontal interval whiskers, one row per label (a forest plot's trace)."""
    points = [number(value) for value in estimates]
    plus = [_gap(high, point, upper=True) for high, point in zip(highs, points, strict=True)]
    minus = [_gap(low, point, upper=False) for low, point in zip(lows, points, strict=True)]
    value_format = ".1%" if percent else ",.3~f"
    trace: Trace = {
        "type": "scatter",
        "mode": "markers",
        "name": text(name),
        "x": points,
        "y": [text(label) for label in labels],
        "error_x": {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "color": color(index)},
        "marker": {"color": color(index), "size": 9},
        "hovertemplate": f"%{{y}}: %{{x:{value_format}}}",
    }
    if hover is not None:
        trace["customdata"] = [text(item) for item in hover]
        trace["hovertemplate"] += "<br>%{customdata}"
    trace["hovertemplate"] += f"<extra>{text(name)}</extra>"
    return trace


def reference_line(value: float, *, axis: str = "x", label: str = "", dash: str = "dot") -> dict[str, Any]:
    """A layout shape across the plot at ``value`` on ``axis`` (e.g. no effect, a percentile)."""
    other = "y" if axis == "x" else "x"
    shape: dict[str, Any] = {
        "type": "line",
        f"{axis}0": value,
        f"{axis}1": value,
        f"{other}ref": "paper",
        f"{other}0": 0,
        f"{other}1": 1,
        "line": {"color": "#555", "width": 1, "dash": dash},
    }
    if label:
        shape["label"] = {"text": text(label), "textposition": "end", "font": {"size": 11}}
    return shape


def _gap(edge: Any, point: float | None, *, upper: bool) -> float | None:
    value = number(edge)
    if value is None or point is None:
        return None
    return max(0.0, value - point if upper else point - value)


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bool | int | float | Decimal) or type(value).__module__ == "numpy":
        return number(value)
    return text(value)


def _translucent(hex_color: str, alpha: float = 0.2) -> str:
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def plotly_js() -> str:
    """The text of the installed plotly package's ``plotly.min.js``: served and embedded as is."""
    return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON safe inside an inline ``<script>``: no ``</script>`` or comment opener can close it."""
    encoded = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return encoded.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def plotly_script() -> str:
    """The library inline, once per static file, before any ``embed``."""
    return f"<script>{plotly_js()}</script>"


def embed(chart: Figure, div_id: str) -> str:
    """A ``<div>``, its figure as inert JSON and the inline script drawing it (needs ``plotly_script``
    earlier in the page); the JSON block is ``<div id>-figure``, so a test or a reader can take it back."""
    target = html.escape(div_id, quote=True)
    source = script_json(f"{div_id}-figure")
    # The title is already escaped for Plotly; undone once, then escaped for the attribute.
    title = html.escape(html.unescape(str(chart.get("layout", {}).get("title", {}).get("text", ""))), quote=True)
    return (
        f'<div id="{target}" class="chart" aria-label="{title}"></div>\n'
        f'<script type="application/json" id="{target}-figure">{script_json(chart)}</script>\n'
        f"<script>(function(){{var f=JSON.parse(document.getElementById({source}).textContent);"
        f"Plotly.newPlot({script_json(div_id)},f.data,f.layout,f.config);}})();</script>"
    )


# Panels of the workspace: one per kind, from the rows of the route behind it.


def _grouped(rows: Rows, key: Callable[[dict[str, Any]], Any]) -> dict[Any, Rows]:
    groups: dict[Any, Rows] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def _step_label(row: dict[str, Any]) -> str:
    return f"{row['step']}. {row['step_name']}"


def _seconds(value: Any) -> str:
    seconds = number(value)
    if seconds is None:
        return "–"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


def empty(title: str, message: str = "No rows for this selection.") -> Figure:
    """A blank chart saying why, so a panel without rows is not mistaken for one still loading."""
    blank = layout(title)
    blank["xaxis"] |= {"visible": False}
    blank["yaxis"] |= {"visible": False}
    blank["annotations"] = [
        {"text": text(message), "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False}
    ]
    return figure([], blank)


def funnel_steps(rows: Rows) -> Figure:
    """Conversion from the first step, a bar per step per breakdown value (rows of funnel.sql)."""
    title = "Conversion by step"
    if not rows:
        return empty(title)
    labels = list(dict.fromkeys(_step_label(row) for row in rows))
    traces = []
    for index, (value, group) in enumerate(_grouped(rows, lambda row: row.get("breakdown", "")).items()):
        by_label = {_step_label(row): row for row in group}
        picked = [by_label.get(label) for label in labels]
        traces.append(
            bar_trace(
                value or "all",
                labels,
                [row["conversion"] if row else None for row in picked],
                index=index,
                percent=True,
                hover=[f"{int(number(row['units']) or 0):,} units" if row else "" for row in picked],
            )
        )
    chart_layout = layout(title, y_title="conversion from the first step", y_percent=True, x_type="category")
    chart_layout.update(barmode="group", showlegend=len(traces) > 1)
    return figure(traces, chart_layout)


def incomplete_lines(
    name: Any,
    x: Sequence[Any],
    values: Sequence[Any],
    complete: Sequence[bool],
    *,
    index: int = 0,
    percent: bool = True,
) -> list[Trace]:
    """A line whose final points may still change: solid while complete, then dashed with open markers."""
    done = [bool(flag) for flag in complete]
    solid = [value if flag else None for value, flag in zip(values, done, strict=True)]
    traces = [line_trace(name, x, solid, index=index, percent=percent)]
    if not all(done):
        start = done.index(False)
        # The dashed part starts at the last complete point so the line stays joined.
        dashed = [value if position >= max(start - 1, 0) else None for position, value in enumerate(values)]
        trace = line_trace(
            f"{name} (incomplete)", x, dashed, index=index, percent=percent, dash="dash", show_legend=False
        )
        trace["legendgroup"] = text(name)
        trace["marker"]["symbol"] = "circle-open"
        traces.append(trace)
    return traces


def _when(value: Any) -> datetime:
    """A bucket start as a UTC datetime (a date is its midnight)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def day_ticks(chart_layout: dict[str, Any], buckets: Sequence[Any]) -> None:
    """One tick per day on a date axis of whole-day buckets (Plotly would tick every few hours)."""
    starts = sorted({_when(bucket) for bucket in buckets})
    midnights = all(start == start.replace(hour=0, minute=0, second=0, microsecond=0) for start in starts)
    if starts and len(starts) <= 31 and midnights:
        chart_layout["xaxis"] |= {"dtick": 86_400_000, "tickformat": "%b %d"}


def incomplete_shade(buckets: Sequence[Any], complete: Sequence[bool]) -> list[dict[str, Any]]:
    """A shaded span over the buckets (starts, ascending) whose numbers may still change, to the end
    of the last one; none when all are complete."""
    pending = [_when(bucket) for bucket, done in zip(buckets, complete, strict=True) if not done]
    if not pending:
        return []
    starts = sorted({_when(bucket) for bucket in buckets})
    steps = [later - earlier for earlier, later in pairwise(starts)]
    width = min(steps) if steps else timedelta(days=1)
    return [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": moment(min(pending)),
            "x1": moment(starts[-1] + width),
            "y0": 0,
            "y1": 1,
            "fillcolor": "rgba(0,0,0,0.06)",
            "line": {"width": 0},
            "layer": "below",
            "label": {"text": "incomplete: steps may still come", "textposition": "top center", "font": {"size": 11}},
        }
    ]


def funnel_over_time(rows: Rows) -> Figure:
    """Conversion per entry bucket, a line per step; buckets whose steps may still come are dashed
    and shaded (rows of funnel_over_time.sql: bucket, step, step_name, units, conversion, complete)."""
    title = "Conversion over time"
    if not rows:
        return empty(title)
    traces: list[Trace] = []
    for index, group in enumerate(_grouped(rows, _step_label).values()):
        ordered = sorted(group, key=lambda row: moment(row["bucket"]))
        x = [moment(row["bucket"]) for row in ordered]
        complete = [bool(row.get("complete", True)) for row in ordered]
        traces += incomplete_lines(
            _step_label(ordered[0]), x, [row["conversion"] for row in ordered], complete, index=index
        )
    chart_layout = layout(title, y_title="conversion from the first step", y_percent=True, x_type="date")
    day_ticks(chart_layout, [row["bucket"] for row in rows])
    chart_layout["shapes"] = incomplete_shade(
        [row["bucket"] for row in rows], [bool(row.get("complete", True)) for row in rows]
    )
    return figure(traces, chart_layout)


def _bin_label(start: Any, end: Any) -> str:
    return f"{_seconds(start)} – {_seconds(end)}"


def _bin_position(seconds: float, bins: list[tuple[float, float]]) -> float | None:
    """Where ``seconds`` falls on a category axis of ``bins`` (index ± 0.5 across a bin, log-spaced)."""
    for index, (start, end) in enumerate(bins):
        if start <= seconds < end or (index == len(bins) - 1 and seconds == end):
            if start > 0 and end > start:
                fraction = (math.log(seconds) - math.log(start)) / (math.log(end) - math.log(start))
            else:
                fraction = seconds / end if end else 0.0
            return index - 0.5 + min(max(fraction, 0.0), 1.0)
    return None


def _log2_bin(index: int) -> tuple[float, float]:
    """funnel_ttc_histogram.sql's bins: 0 is [0, 1) s, b >= 1 is [2^(b-1), 2^b) s."""
    return (0.0 if index == 0 else float(2 ** (index - 1)), float(2**index))


def time_to_convert(rows: Rows) -> Figure:
    """P50/P90/P99 of each step's time from the previous one, per breakdown value when there is one
    (rows of time_to_convert.sql)."""
    labels = [f"{row['step_name']} · {row['breakdown']}" if row.get("breakdown") else row["step_name"] for row in rows]
    quantiles = {name: [row[f"{name.lower()}_s"] for row in rows] for name in ("P50", "P90", "P99")}
    return bar(labels, quantiles, title="Time from the previous step", value_title="seconds")


def ttc_histogram(rows: Rows, percentiles: Rows | None = None) -> Figure:
    """Time from the previous step, a bar series per step over log-spaced bins (rows of
    funnel_ttc_histogram.sql; empty bins between filled ones drawn as 0), with P50/P90 lines from
    the rows' p50_s/p90_s or from ``percentiles`` (rows of time_to_convert.sql)."""
    title = "Time to convert, from the previous step"
    if not rows:
        return empty(title)
    indexes = [int(row["bin"]) for row in rows]
    bins = [_log2_bin(index) for index in range(min(indexes), max(indexes) + 1)]
    labels = [_bin_label(start, end) for start, end in bins]
    steps = _grouped(rows, _step_label)
    # The percentiles are named in the legend, beside their step: labels on the lines overlap.
    legend = {name: name for name in steps}
    shapes = []
    for row in _first_per_step(rows if percentiles is None else percentiles):
        name = _step_label(row)
        index = list(steps).index(name) if name in steps else 0
        named = []
        for key, dash in (("p50_s", "dot"), ("p90_s", "dash")):
            seconds = number(row.get(key))
            position = None if seconds is None else _bin_position(seconds, bins)
            if seconds is None or position is None:
                continue
            named.append(f"{key[:3].upper()} {_seconds(seconds)}")
            shape = reference_line(position, dash=dash)
            shape["line"]["color"] = color(index)
            shapes.append(shape)
        if named and name in legend:
            legend[name] = f"{name} ({', '.join(named)}; P50 dotted, P90 dashed)"
    traces = []
    for index, (name, group) in enumerate(steps.items()):
        units = {int(row["bin"]): row["units"] for row in group}
        counts = [units.get(bin_index, 0) for bin_index in range(min(indexes), max(indexes) + 1)]
        traces.append(bar_trace(legend[name], labels, counts, index=index))
    chart_layout = layout(title, x_title="time from the previous step", y_title="units", x_type="category")
    chart_layout.update(barmode="group", shapes=shapes)
    return figure(traces, chart_layout)


def _first_per_step(rows: Rows) -> Rows:
    """One row per step: the overall one ('(none)' or no breakdown) when there, else the first."""
    picked: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if row["step"] not in picked or row.get("breakdown") in ("", "(none)", None):
            picked[row["step"]] = row
    return list(picked.values())


def correlation(rows: Rows) -> Figure:
    """What goes with dropping off: log odds ratio of converting per property, top first; blue
    converts more, vermillion less, pale is not significant (rows of the correlation route)."""
    title = "What goes with converting (log odds ratio)"
    if not rows:
        return empty(title, "No property passes the minimum count.")
    labels, values, colours, hovers, marks = [], [], [], [], []
    for row in rows:
        ratio = number(row.get("odds_ratio"))
        label = f"{row['property']} = {row['value']}" if row.get("kind") == "dimension" else f"did {row['value']}"
        labels.append(text(label))
        log_ratio = math.log(ratio) if ratio is not None and ratio > 0 else None
        values.append(log_ratio)
        significant = bool(row.get("significant"))
        base = PALETTE[0] if (log_ratio or 0) >= 0 else PALETTE[5]
        colours.append(base if significant else _translucent(base, 0.35))
        marks.append("significant" if significant else "")
        p_value = number(row.get("p_value"))
        hovers.append(
            f"odds ratio {'–' if ratio is None else f'{ratio:.3g}'}; converted {row['converted']:,} / dropped "
            f"{row['dropped']:,} with, {row['converted_without']:,} / {row['dropped_without']:,} without; "
            f"p = {'–' if p_value is None else f'{p_value:.3g}'}"
        )
    trace: Trace = {
        "type": "bar",
        "orientation": "h",
        "name": "log odds ratio",
        "y": labels,
        "x": values,
        "marker": {"color": colours},
        "text": marks,
        "textposition": "auto",
        "customdata": [text(hover) for hover in hovers],
        "hovertemplate": "%{y}: %{x:.3f}<br>%{customdata}<extra></extra>",
    }
    chart_layout = layout(title, x_title="log odds ratio of converting (0: no difference)", y_type="category")
    chart_layout["yaxis"]["autorange"] = "reversed"
    chart_layout.update(showlegend=False, shapes=[reference_line(0.0)], height=max(300, 28 * len(rows) + 120))
    return figure([trace], chart_layout)


def paths(rows: Rows) -> Figure:
    """The most common next events after dropping off, most units first (rows: path, units, share)."""
    title = "What they did instead"
    if not rows:
        return empty(title)
    chart = bar([row["path"] for row in rows], {"units": [row["units"] for row in rows]}, horizontal=True, title=title)
    trace = chart["data"][0]
    trace["customdata"] = [f"{(number(row.get('share')) or 0):.1%} of the units that dropped" for row in rows]
    trace["hovertemplate"] = "%{y}: %{x:,} units<br>%{customdata}<extra></extra>"
    chart["layout"]["xaxis"]["title"]["text"] = "units"
    chart["layout"]["height"] = max(300, 28 * len(rows) + 120)
    return chart


def _series_x(row: dict[str, Any]) -> Any:
    """A timeline point's x: its date when it has one, else its day number."""
    return row["date"] if row.get("date") is not None else row["day"]


def _pct_text(value: Any) -> str:
    share = number(value)
    return "–" if share is None else f"{share:.1%}"


def _p_text(value: Any) -> str:
    p = number(value)
    return "–" if p is None else f"{p:.3g}"


def task_time_histogram(rows: Rows) -> Figure:
    """Task time per image, an overlaid bar series per tool or variant over log-spaced bins (rows:
    dimension, group, bin, bin_start_s, bin_end_s, images; bins as funnel_ttc_histogram.sql's)."""
    title = "Task time per image"
    if not rows:
        return empty(title)
    indexes = [int(row["bin"]) for row in rows]
    span = range(min(indexes), max(indexes) + 1)
    labels = [_bin_label(*_log2_bin(index)) for index in span]
    traces = []
    groups = _grouped(rows, lambda row: f"{row.get('dimension', 'group')}: {row['group']}")
    for index, (name, group) in enumerate(groups.items()):
        images = {int(row["bin"]): row["images"] for row in group}
        trace = bar_trace(name, labels, [images.get(bin_index, 0) for bin_index in span], index=index)
        trace["opacity"] = 0.6 if len(groups) > 1 else 1.0
        traces.append(trace)
    chart_layout = layout(title, x_title="first tool click to save", y_title="images", x_type="category")
    chart_layout.update(barmode="overlay")
    return figure(traces, chart_layout)


def task_time_trend(rows: Rows) -> Figure:
    """P50 (solid) and P90 (dashed) task time per day, a pair of lines per group (rows: day, group,
    p50_s, p90_s, images)."""
    title = "Task time by day"
    if not rows:
        return empty(title)
    traces = []
    for index, (name, group) in enumerate(_grouped(rows, lambda row: row.get("group", "all")).items()):
        ordered = sorted(group, key=lambda row: moment(row["day"]))
        days = [row["day"] for row in ordered]
        traces.append(line_trace(f"{name} P50", days, [row["p50_s"] for row in ordered], index=index, group=text(name)))
        traces.append(
            line_trace(
                f"{name} P90", days, [row["p90_s"] for row in ordered], index=index, dash="dash", group=text(name)
            )
        )
    trend_layout = layout(title, y_title="seconds", x_type="date")
    day_ticks(trend_layout, [row["day"] for row in rows])
    return figure(traces, trend_layout)


def image_timeline(rows: Rows) -> Figure:
    """One image's events on a time axis, a row per event type (rows: event_ts, event_type, and any
    of tool_name, inference_type, source shown on hover)."""
    title = "Events of the image"
    if not rows:
        return empty(title)
    ordered = sorted(rows, key=lambda row: moment(row["event_ts"]))
    details = [
        "; ".join(f"{key} {row[key]}" for key in ("tool_name", "inference_type", "source") if row.get(key))
        for row in ordered
    ]
    trace: Trace = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "events",
        "x": [moment(row["event_ts"]) for row in ordered],
        "y": [text(row["event_type"]) for row in ordered],
        "line": {"color": "#bbb", "width": 1},
        "marker": {"color": color(0), "size": 10},
        "customdata": [text(detail) for detail in details],
        "hovertemplate": "%{x}: %{y}<br>%{customdata}<extra></extra>",
    }
    chart_layout = layout(title, x_type="date", y_type="category")
    chart_layout.update(showlegend=False, height=max(260, 30 * len({row["event_type"] for row in rows}) + 140))
    return figure([trace], chart_layout)


def metric_intervals(rows: Rows, title: str = "Relative lift with its interval") -> Figure:
    """Relative lift of every metric with its deciding interval (a forest plot, a series per variant);
    the dotted line is no effect; significant points are filled, others open (rows: metric, variant,
    control, relative_lift, lift_ci_low, lift_ci_high, p_value, p_value_adjusted, significant, and
    optionally mark: the word a filled point's hover says, 'significant' by default)."""
    if not rows:
        return empty(title)
    traces = []
    for index, (variant, group) in enumerate(_grouped(rows, lambda row: row["variant"]).items()):
        hover = [
            f"vs {row.get('control', 'control')}: [{_pct_text(row['lift_ci_low'])}, {_pct_text(row['lift_ci_high'])}], "
            f"p = {_p_text(row.get('p_value'))}, adjusted p = {_p_text(row.get('p_value_adjusted'))}"
            + (f", {row.get('mark', 'significant')}" if row.get("significant") else "")
            for row in group
        ]
        trace = interval(
            variant,
            [row["metric"] for row in group],
            [row["relative_lift"] for row in group],
            [row["lift_ci_low"] for row in group],
            [row["lift_ci_high"] for row in group],
            index=index,
            percent=True,
            hover=hover,
        )
        trace["marker"]["symbol"] = ["circle" if row.get("significant") else "circle-open" for row in group]
        traces.append(trace)
    chart_layout = layout(title, x_title="relative lift", x_percent=True, y_type="category")
    chart_layout["yaxis"]["autorange"] = "reversed"
    metrics = len({row["metric"] for row in rows})
    chart_layout.update(shapes=[reference_line(0.0)], height=max(260, 34 * metrics + 140))
    return figure(traces, chart_layout)


def lift_timeline(rows: Rows, x_title: str = "date", title: str = "Lift over time") -> Figure:
    """Lift over time, a line per metric and variant with its interval as a band; the dotted line is
    no effect, significant days are filled points (rows: metric, variant, day, date (optional),
    relative_lift, lift_ci_low, lift_ci_high, significant, p_value)."""
    if not rows:
        return empty(title)
    traces: list[Trace] = []
    for index, (name, group) in enumerate(_grouped(rows, lambda row: f"{row['metric']} ({row['variant']})").items()):
        ordered = sorted(group, key=lambda row: row["day"])
        x = [_series_x(row) for row in ordered]
        banded = [row for row in ordered if row.get("lift_ci_low") is not None and row.get("lift_ci_high") is not None]
        if banded:
            traces.extend(
                band(
                    name,
                    [_series_x(row) for row in banded],
                    [row["lift_ci_low"] for row in banded],
                    [row["lift_ci_high"] for row in banded],
                    index=index,
                    percent=True,
                )
            )
        line = line_trace(name, x, [row["relative_lift"] for row in ordered], index=index, percent=True)
        line["marker"]["symbol"] = ["circle" if row.get("significant") else "circle-open" for row in ordered]
        line["customdata"] = [
            f"[{_pct_text(row.get('lift_ci_low'))}, {_pct_text(row.get('lift_ci_high'))}], "
            f"p = {_p_text(row.get('p_value'))}" + (", significant" if row.get("significant") else "")
            for row in ordered
        ]
        line["hovertemplate"] = f"%{{x}}: %{{y:.1%}} %{{customdata}}<extra>{text(name)}</extra>"
        traces.append(line)
    dated = all(row.get("date") is not None for row in rows)
    chart_layout = layout(
        title, x_title=x_title, y_title="relative lift", y_percent=True, x_type="date" if dated else None
    )
    if not dated and len({row["day"] for row in rows}) <= 15:
        chart_layout["xaxis"]["dtick"] = 1
    chart_layout["shapes"] = [reference_line(0.0, axis="y")]
    return figure(traces, chart_layout)


def exposures_by_day(rows: Rows) -> Figure:
    """Units first exposed per day, a stacked bar per variant (rows: date, variant, units)."""
    title = "Units first exposed per day"
    if not rows:
        return empty(title)
    days = sorted({moment(row["date"]) for row in rows})
    traces = []
    for index, (variant, group) in enumerate(_grouped(rows, lambda row: row["variant"]).items()):
        units = {moment(row["date"]): row["units"] for row in group}
        trace = bar_trace(variant, days, [units.get(day, 0) for day in days], index=index)
        trace["x"] = days
        traces.append(trace)
    chart_layout = layout(title, y_title="units", x_type="date")
    chart_layout.update(barmode="stack")
    return figure(traces, chart_layout)


def srm_by_dimension(rows: Rows) -> Figure:
    """Each arm's share of the units per dimension value, stacked to 100 %, with the expected split
    as dotted lines; a mismatched value is marked (rows: dimension, value, variant, units, share,
    expected_share (optional), p_value, alert)."""
    title = "Sample ratio per dimension value"
    if not rows:
        return empty(title)
    labels = list(dict.fromkeys(f"{row['dimension']} = {row['value']}" for row in rows))
    checks = {f"{row['dimension']} = {row['value']}": row for row in rows}
    shown = [(label + "  ⚠ mismatch") if checks[label].get("alert") else label for label in labels]
    traces = []
    expected: list[float] = []
    for index, (variant, group) in enumerate(_grouped(rows, lambda row: row["variant"]).items()):
        by_label = {f"{row['dimension']} = {row['value']}": row for row in group}
        picked = [by_label.get(label) for label in labels]
        traces.append(
            bar_trace(
                variant,
                shown,
                [row["share"] if row else None for row in picked],
                index=index,
                horizontal=True,
                percent=True,
                hover=[
                    f"{int(number(row['units']) or 0):,} units, p = {_p_text(row.get('p_value'))}" if row else ""
                    for row in picked
                ],
            )
        )
        share = number(group[0].get("expected_share"))
        if share is not None:
            expected.append(share)
    # The expected split as cumulative boundaries between the stacked arms.
    boundaries = [sum(expected[: i + 1]) for i in range(len(expected) - 1)]
    chart_layout = layout(title, x_title="share of the units", x_percent=True, y_type="category")
    chart_layout["yaxis"]["autorange"] = "reversed"
    chart_layout.update(
        barmode="stack",
        shapes=[reference_line(boundary, label="expected") for boundary in boundaries],
        height=max(260, 30 * len(labels) + 140),
    )
    return figure(traces, chart_layout)


def pipeline_lag(rows: Rows) -> Figure:
    """P50/P90/P99 lag per pipeline stage and source (rows: stage, source, p50_ms, p90_ms, p99_ms)."""
    title = "Lag per stage"
    if not rows:
        return empty(title)
    labels = [f"{row['stage']} · {row['source']}" if row.get("source") else str(row["stage"]) for row in rows]
    series = {
        name: [(number(row.get(key)) or 0.0) / 1000 if row.get(key) is not None else None for row in rows]
        for name, key in (("P50", "p50_ms"), ("P90", "p90_ms"), ("P99", "p99_ms"))
    }
    chart = bar(labels, series, title=title, horizontal=True, value_title="seconds")
    chart["layout"]["height"] = max(260, 60 * len(rows) + 120)
    return chart


def freshness(rows: Rows) -> Figure:
    """How old the newest data of each source or stage is (rows: source, age_s, last_seen_at)."""
    title = "Freshness: age of the newest data"
    if not rows:
        return empty(title)
    chart = bar(
        [row["source"] for row in rows],
        {"age": [row["age_s"] for row in rows]},
        title=title,
        horizontal=True,
        value_title="seconds since the newest event",
    )
    chart["data"][0]["customdata"] = [f"newest {moment(row.get('last_seen_at'))}" for row in rows]
    chart["data"][0]["hovertemplate"] = "%{y}: %{x:,.1f} s<br>%{customdata}<extra></extra>"
    return chart
