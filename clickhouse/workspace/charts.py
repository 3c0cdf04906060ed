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
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import orjson

from clickhouse.workspace.answers import Figure

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
        "legend": {"orientation": "h", "y": -0.2},
        "margin": {"l": 60, "r": 20, "t": 50 if title else 20, "b": 60},
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
    value_format = ".1%" if percent else ",.4~g"
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
    value_format = ".1%" if percent else ",.4~g"
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
    value_format = ".1%" if percent else ",.4~g"
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
    value_format = ".1%" if percent else ",.4~g"
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
    """A ``<div>`` and the inline script drawing ``chart`` into it (needs ``plotly_script`` earlier)."""
    target = html.escape(div_id, quote=True)
    return (
        f'<div id="{target}" class="chart"></div>\n'
        f"<script>(function(){{var f={script_json(chart)};"
        f"Plotly.newPlot({script_json(div_id)},f.data,f.layout,f.config);}})();</script>"
    )
