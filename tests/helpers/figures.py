"""The Plotly figures a static HTML page embeds (``charts.embed``), read back by chart id."""

from __future__ import annotations

import json
import re
from typing import Any

from clickhouse.workspace import charts

_FIGURE = re.compile(r'<script type="application/json" id="([^"]+)-figure">(.*?)</script>', re.DOTALL)


def embedded_figures(page: str) -> dict[str, dict[str, Any]]:
    """Every embedded figure of ``page`` by its chart's div id, in page order."""
    return {match.group(1): json.loads(match.group(2)) for match in _FIGURE.finditer(page)}


def figure_numbers(figure: dict[str, Any], axis: str) -> list[Any]:
    """Every value on ``axis`` ('x' or 'y') over the figure's traces, in order."""
    return [value for trace in figure["data"] for value in trace.get(axis, [])]


_DRAW = re.compile(
    r'<script>\(function\(\)\{var f=JSON\.parse\(document\.getElementById\("[\w-]+-figure"\)\.textContent\);'
    r'Plotly\.newPlot\("[\w-]+",f\.data,f\.layout,f\.config\);\}\)\(\);</script>'
)


def without_charts(page: str) -> str:
    """``page`` less the inline library, the figure JSON blocks and their draw calls: what is left is
    the report's own markup, where no other script, link or unescaped value may stand."""
    page = page.replace(charts.plotly_script(), "")
    return _DRAW.sub("", _FIGURE.sub("", page))
