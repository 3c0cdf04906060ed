"""Charts are plain JSON figures, escape every data string, and draw the numbers of their rows."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import orjson

from clickhouse.workspace import charts
from tests.helpers.figures import embedded_figures

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
    hostile = "</script><script>alert(1)</script>"
    figure = charts.bar([hostile], {"n": [1]})
    snippet = charts.embed(figure, "chart-1")
    assert snippet.count("</script>") == 2
    assert 'id="chart-1"' in snippet
    titled = charts.embed(charts.bar(["a"], {"n": [1]}, title='5 < 6 & "x"'), "chart-2")
    assert 'aria-label="5 &lt; 6 &amp; &quot;x&quot;"' in titled
    assert embedded_figures(snippet) == {"chart-1": figure}


def test_plotly_js_is_the_bundled_library() -> None:
    source = charts.plotly_js()
    assert len(source) > 1_000_000
    assert "plotly.js" in source[:2000].lower()


def funnel_rows(breakdown: str = "(none)") -> list[dict[str, object]]:
    return [
        {"breakdown": breakdown, "step": 1, "step_name": "image_uploaded", "units": 100, "conversion": 1.0},
        {"breakdown": breakdown, "step": 2, "step_name": HOSTILE, "units": 40, "conversion": 0.4},
    ]


def test_funnel_steps_draws_conversion_per_breakdown() -> None:
    figure = charts.funnel_steps(funnel_rows("control") + funnel_rows(HOSTILE))
    assert [trace["name"] for trace in figure["data"]] == ["control", ESCAPED]
    assert figure["data"][0]["y"] == [1.0, 0.4]
    assert figure["data"][0]["x"] == ["1. image_uploaded", f"2. {ESCAPED}"]
    assert HOSTILE not in dumped(figure)


def test_funnel_over_time_dashes_incomplete_buckets() -> None:
    day = [datetime(2026, 3, d, tzinfo=UTC) for d in (1, 2, 3)]
    rows = [
        {"bucket": b, "step": 2, "step_name": "image_saved", "units": u, "conversion": c, "complete": done}
        for b, u, c, done in zip(day, [5, 6, 7], [0.5, 0.6, 0.7], [True, True, False], strict=True)
    ]
    figure = charts.funnel_over_time(rows)
    solid, dashed = figure["data"]
    assert solid["y"] == [0.5, 0.6, None]
    assert dashed["y"] == [None, 0.6, 0.7] and dashed["line"]["dash"] == "dash"
    assert figure["layout"]["shapes"][0]["x0"] == "2026-03-03 00:00:00"
    dumped(figure)


def test_ttc_histogram_fills_empty_bins_and_marks_percentiles() -> None:
    rows = [
        {
            "step": 2,
            "step_name": "s",
            "bin": b,
            "bin_start_s": lo,
            "bin_end_s": hi,
            "units": n,
            "p50_s": 3.0,
            "p90_s": 9,
        }
        for b, lo, hi, n in ((1, 1, 2, 4), (3, 4, 8, 2), (4, 8, 16, 1))
    ]
    figure = charts.ttc_histogram(rows)
    assert figure["data"][0]["y"] == [4, 0, 2, 1]
    positions = [shape["x0"] for shape in figure["layout"]["shapes"]]
    assert 0.5 < positions[0] < 1.5 and 2.5 < positions[1] < 3.5
    assert charts.ttc_histogram([])["data"] == []


def test_correlation_and_paths_keep_their_order_and_escape_values() -> None:
    rows = [
        {
            "kind": "dimension",
            "property": "variant",
            "value": HOSTILE,
            "converted": 10,
            "dropped": 40,
            "converted_without": 50,
            "dropped_without": 50,
            "odds_ratio": 0.25,
            "p_value": 0.001,
            "significant": True,
        },
        {
            "kind": "event",
            "property": "event_type",
            "value": "zoom",
            "converted": 5,
            "dropped": 5,
            "converted_without": 55,
            "dropped_without": 85,
            "odds_ratio": 1.5,
            "p_value": 0.4,
            "significant": False,
        },
    ]
    figure = charts.correlation(rows)
    trace = figure["data"][0]
    assert trace["y"] == [f"variant = {ESCAPED}", "did zoom"]
    assert abs(trace["x"][0] - np.log(0.25)) < 1e-12
    assert trace["text"] == ["significant", ""]
    path_figure = charts.paths([{"path": f"{HOSTILE} → (end)", "units": 7, "share": 0.7}])
    assert path_figure["data"][0]["x"] == [7]
    for chart in (figure, path_figure):
        assert HOSTILE not in dumped(chart)


def test_task_time_panels_hold_the_numbers() -> None:
    histogram = charts.task_time_histogram(
        [
            {"dimension": "tool", "group": HOSTILE, "bin": 2, "bin_start_s": 2, "bin_end_s": 4, "images": 3},
            {"dimension": "tool", "group": HOSTILE, "bin": 4, "bin_start_s": 8, "bin_end_s": 16, "images": 1},
            {"dimension": "variant", "group": "control", "bin": 3, "bin_start_s": 4, "bin_end_s": 8, "images": 2},
        ]
    )
    assert [trace["y"] for trace in histogram["data"]] == [[3, 0, 1], [0, 2, 0]]
    trend = charts.task_time_trend(
        [{"day": date(2026, 3, d), "group": HOSTILE, "p50_s": d, "p90_s": 2 * d, "images": 5} for d in (2, 1)]
    )
    assert trend["data"][0]["y"] == [1.0, 2.0] and trend["data"][1]["y"] == [2.0, 4.0]
    timeline = charts.image_timeline(
        [
            {"event_ts": datetime(2026, 3, 1, 0, 0, 5, tzinfo=UTC), "event_type": "image_saved"},
            {"event_ts": datetime(2026, 3, 1, tzinfo=UTC), "event_type": "tool_selected", "tool_name": HOSTILE},
        ]
    )
    assert timeline["data"][0]["y"] == ["tool_selected", "image_saved"]
    for chart in (histogram, trend, timeline):
        assert HOSTILE not in dumped(chart)


def test_experiment_panels_hold_the_numbers() -> None:
    comparison = {
        "metric": HOSTILE,
        "variant": HOSTILE,
        "control": "control",
        "relative_lift": 0.1,
        "lift_ci_low": -0.02,
        "lift_ci_high": 0.22,
        "p_value": 0.1,
        "p_value_adjusted": 0.2,
        "significant": False,
    }
    forest = charts.metric_intervals([comparison])
    assert forest["data"][0]["x"] == [0.1] and forest["data"][0]["marker"]["symbol"] == ["circle-open"]
    timeline = charts.lift_timeline(
        [comparison | {"day": d, "date": date(2026, 3, d), "significant": d == 2} for d in (1, 2)]
    )
    low, high, line = timeline["data"]
    assert line["y"] == [0.1, 0.1] and low["y"] == [-0.02, -0.02] and high["y"] == [0.22, 0.22]
    assert line["marker"]["symbol"] == ["circle-open", "circle"]
    exposures = charts.exposures_by_day(
        [{"date": date(2026, 3, 1), "variant": v, "units": n} for v, n in (("control", 10), (HOSTILE, 12))]
    )
    assert [trace["y"] for trace in exposures["data"]] == [[10], [12]]
    srm = charts.srm_by_dimension(
        [
            {"dimension": "browser", "value": HOSTILE, "variant": v, "units": n, "share": s, "expected_share": 0.5}
            | {"p_value": 0.001, "alert": True}
            for v, n, s in (("control", 30, 0.3), ("treatment", 70, 0.7))
        ]
    )
    assert [trace["x"] for trace in srm["data"]] == [[0.3], [0.7]]
    assert srm["layout"]["shapes"][0]["x0"] == 0.5
    for chart in (forest, timeline, exposures, srm):
        assert HOSTILE not in dumped(chart)


def test_pipeline_panels_hold_the_numbers() -> None:
    lag = charts.pipeline_lag([{"stage": "collector→stream", "source": HOSTILE, "p50_ms": 1500, "p90_ms": 3000}])
    assert [trace["x"] for trace in lag["data"]] == [[1.5], [3.0], [None]]
    fresh = charts.freshness([{"source": HOSTILE, "age_s": 4.5, "last_seen_at": datetime(2026, 3, 1, tzinfo=UTC)}])
    assert fresh["data"][0]["x"] == [4.5]
    for chart in (lag, fresh):
        assert HOSTILE not in dumped(chart)


def test_a_forest_plot_can_name_what_a_filled_point_means() -> None:
    row = {"metric": "failures", "variant": "t", "relative_lift": 0.8, "lift_ci_low": 0.2, "lift_ci_high": 1.4}
    figure = charts.metric_intervals([row | {"significant": True, "mark": "harmed"}], title="Guardrails")
    assert figure["layout"]["title"]["text"] == "Guardrails"
    assert figure["data"][0]["customdata"][0].endswith(", harmed")
