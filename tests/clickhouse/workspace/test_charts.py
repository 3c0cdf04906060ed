"""Charts are plain JSON figures, escape every data string, and draw the numbers of their rows."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import orjson

from clickhouse.workspace import charts

HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def dumped(figure: dict[str, object]) -> str:
    return orjson.dumps(figure).decode()


def test_bar_holds_numbers_and_escapes_labels() -> None:
    figure = charts.bar(["a", HOSTILE], {HOSTILE: [Decimal("0.5"), None], "b": [1, 2]}, percent=True)
    assert figure["config"]["displaylogo"] is False
    first = figure["data"][0]
    assert first["y"] == [0.5, None]
    assert first["x"] == ["a", ESCAPED]
    text = dumped(figure)
    assert HOSTILE not in text
    assert ESCAPED in text


def test_horizontal_bar_reads_top_down() -> None:
    figure = charts.bar(["first", "second"], {"n": [3, 1]}, horizontal=True)
    assert figure["data"][0]["orientation"] == "h"
    assert figure["data"][0]["y"] == ["first", "second"]
    assert figure["layout"]["yaxis"]["autorange"] == "reversed"


def test_lines_and_band_take_times_as_utc_text() -> None:
    moments = [datetime(2026, 3, 1, 12, tzinfo=UTC), date(2026, 3, 2)]
    figure = charts.lines(moments, {"s": [0.25, float("nan")]})
    assert figure["data"][0]["x"] == ["2026-03-01 12:00:00", "2026-03-02"]
    assert figure["data"][0]["y"] == [0.25, None]
    low, high = charts.band(HOSTILE, moments, [0.1, 0.2], [0.3, 0.4])
    assert high["fill"] == "tonexty"
    assert low["y"] == [0.1, 0.2] and high["y"] == [0.3, 0.4]
    assert HOSTILE not in dumped(charts.figure([low, high], charts.layout()))


def test_interval_whiskers_are_distances_from_the_estimate() -> None:
    trace = charts.interval("lift", [HOSTILE], [0.1], [-0.05], [0.3], hover=[HOSTILE])
    assert trace["x"] == [0.1]
    assert abs(trace["error_x"]["array"][0] - 0.2) < 1e-12
    assert abs(trace["error_x"]["arrayminus"][0] - 0.15) < 1e-12
    assert HOSTILE not in orjson.dumps(trace).decode()


def test_numpy_values_become_plain_floats() -> None:
    figure = charts.bar([np.int64(1)], {"n": [np.float64(2.5)]})
    assert figure["data"][0]["y"] == [2.5]
    assert type(figure["data"][0]["y"][0]) is float
    dumped(figure)


def test_embed_cannot_be_closed_by_data() -> None:
    figure = charts.bar(["</script><script>alert(1)</script>"], {"n": [1]})
    snippet = charts.embed(figure, "chart-1")
    assert snippet.count("</script>") == 1
    assert 'id="chart-1"' in snippet


def test_plotly_js_is_the_bundled_library() -> None:
    source = charts.plotly_js()
    assert len(source) > 1_000_000
    assert "plotly.js" in source[:2000].lower()
