"""The static funnel report: Plotly figures holding the rows' numbers, every value escaped, offline."""

from __future__ import annotations

from datetime import UTC, date, datetime

from clickhouse.queries import Breakdown, FunnelRequest
from clickhouse.report import funnel_page
from clickhouse.workspace.charts import plotly_script
from tests.helpers.figures import embedded_figures, without_charts

HOSTILE = "<img src=x onerror=alert(1)>"


def test_the_page_draws_the_rows_and_escapes_every_value() -> None:
    request = FunnelRequest(
        start=datetime(2026, 3, 1, tzinfo=UTC),
        end=datetime(2026, 3, 3, tzinfo=UTC),
        steps=("image_uploaded", "image_saved"),
        breakdown=Breakdown.VARIANT,
        experiment="exp",
    )
    funnel = [
        {"breakdown": arm, "step": step, "step_name": name, "units": units, "conversion": share}
        for arm in ("control", HOSTILE)
        for step, name, units, share in ((1, "image_uploaded", 100, 1.0), (2, "image_saved", 40, 0.4))
    ]
    timing = [{"breakdown": HOSTILE, "step": 2, "step_name": "image_saved", "p50_s": 12.5, "p90_s": 40.0}]
    trend = [
        {"day": date(2026, 3, 1), "upload_to_save": 0.25, "complete": True},
        {"day": date(2026, 3, 2), "upload_to_save": 0.5, "complete": False},
    ]
    page = funnel_page(request, funnel, timing, trend)
    figures = embedded_figures(page)
    conversion = figures["funnel-conversion"]["data"]
    assert [trace["name"] for trace in conversion] == ["control", "&lt;img src=x onerror=alert(1)&gt;"]
    assert [trace["y"] for trace in conversion] == [[1.0, 0.4], [1.0, 0.4]]
    assert [trace["y"] for trace in figures["funnel-timing"]["data"]] == [[12.5], [40.0]]
    solid, dashed = figures["funnel-trend"]["data"]
    assert solid["y"] == [0.25, None] and dashed["y"] == [0.25, 0.5]
    assert figures["funnel-trend"]["layout"]["shapes"][0]["x0"] == "2026-03-02 00:00:00"
    # Offline and safe: the library once, inline; the hostile value only ever as text.
    assert page.count(plotly_script()) == 1
    assert HOSTILE not in page.replace(plotly_script(), "")
    rest = without_charts(page)
    assert "<script" not in rest and "<svg" not in rest and "http" not in rest
