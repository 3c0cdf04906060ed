"""The soak's verdict (RSS growth after warm-up, bounded lag, nothing lost), its resends, its /proc
reading and the SVG it draws, on made-up samples."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from ops.bench.soak import (
    MARGIN_LEFT,
    WIDTH,
    ResendingFactory,
    Sample,
    Thresholds,
    Windows,
    delivery_problems,
    group_rss_kb,
    lag_verdict,
    nice_ticks,
    process_groups,
    render_svg,
    rss_kb,
    rss_verdict,
    slope_per_s,
)

SVG = "{http://www.w3.org/2000/svg}"
LONG = Windows.of(1800.0, Thresholds())


def _samples(
    rss: Mapping[str, Sequence[int | None]],
    lag: Mapping[str, Sequence[int | None]] | None = None,
    every_s: float = 10.0,
) -> list[Sample]:
    count = len(next(iter(rss.values())))
    lag = lag or {}
    return [
        Sample(
            index * every_s,
            {name: values[index] for name, values in rss.items()},
            {name: values[index] for name, values in lag.items()},
        )
        for index in range(count)
    ]


def _ramp(start: int, end: int, count: int = 181) -> list[int | None]:
    """``count`` samples (10 s apart: 30 minutes) climbing evenly from ``start`` to ``end``."""
    return [round(start + (end - start) * index / (count - 1)) for index in range(count)]


# --- windows ---------------------------------------------------------------------------------------


def test_windows_of_a_full_soak_are_minute_5_and_the_last_minute() -> None:
    assert Windows(300.0, (300.0, 360.0), (1740.0, 1800.0)) == LONG


def test_a_short_run_warms_up_for_a_quarter_and_its_windows_do_not_overlap() -> None:
    windows = Windows.of(120.0, Thresholds())
    assert windows == Windows(30.0, (30.0, 60.0), (90.0, 120.0))
    assert windows.baseline[1] <= windows.final[0]


# --- RSS -------------------------------------------------------------------------------------------


def test_memory_that_grows_only_during_warm_up_passes() -> None:
    # Doubles in the first five minutes (caches, pools), then flat with noise.
    series: list[int | None] = [100_000 + 100_000 * min(index, 30) // 30 + (index % 3) * 1000 for index in range(181)]
    figures, problems = rss_verdict(_samples({"stream": series}), LONG, 0.10)
    assert problems == []
    assert figures["stream"]["growth"] == pytest.approx(0.0, abs=0.01)
    assert figures["stream"]["baseline_mb"] == pytest.approx(196.3, abs=1)


def test_memory_that_keeps_growing_after_warm_up_fails() -> None:
    # 200 MB at minute 5, 15 % more at the end: a leak.
    figures, problems = rss_verdict(_samples({"warehouse": _ramp(195_000, 231_000)}), LONG, 0.10)
    assert figures["warehouse"]["growth"] > 0.10
    assert len(problems) == 1 and problems[0].startswith("warehouse: RSS grew")


def test_growth_of_exactly_the_bound_passes_and_a_little_more_fails() -> None:
    flat_then = {"at": [100_000] * 120 + [110_000] * 61, "over": [100_000] * 120 + [110_200] * 61}
    _, problems = rss_verdict(_samples(flat_then), LONG, 0.10)
    assert [problem.split(":")[0] for problem in problems] == ["over"]


def test_one_spike_in_a_window_does_not_decide_it() -> None:
    series: list[int | None] = [100_000] * 181
    series[-2] = 400_000  # a merge or a GC at the end; the window's median ignores it
    figures, problems = rss_verdict(_samples({"warehouse": series}), LONG, 0.10)
    assert problems == []
    assert figures["warehouse"]["max_mb"] == pytest.approx(390.6, abs=0.1)


def test_a_process_that_was_not_running_at_a_sample_fails() -> None:
    series: list[int | None] = [100_000] * 181
    series[100] = None
    _, problems = rss_verdict(_samples({"ingest": series}), LONG, 0.10)
    assert problems == ["ingest: not running at 1 samples (first at 1000s)"]


def test_a_process_never_seen_in_a_window_fails() -> None:
    series: list[int | None] = [100_000] * 30 + [None] * 151
    _, problems = rss_verdict(_samples({"s3": series}), LONG, 0.10)
    assert "s3: no RSS in the baseline or the final window" in problems


# --- lag -------------------------------------------------------------------------------------------


def test_a_noisy_bounded_lag_passes_and_a_backlog_in_the_first_half_is_warm_up() -> None:
    lag: list[int | None] = [50_000 if index < 20 else (index * 7919) % 3000 for index in range(181)]
    figures, problems = lag_verdict(_samples({"p": [1] * 181}, {"loader": lag}), 1800.0, 10_000)
    assert problems == []
    assert figures["loader"]["max_second_half"] < 3000


def test_a_lag_above_the_bound_in_the_second_half_fails() -> None:
    lag: list[int | None] = [100] * 181
    lag[170] = 12_000
    _, problems = lag_verdict(_samples({"p": [1] * 181}, {"stream processors": lag}), 1800.0, 10_000)
    assert problems == ["lag of stream processors: 12000 messages in the second half (at most 10000)"]


def test_a_low_but_climbing_lag_fails() -> None:
    # Never above the bound, but up by 6,000 across the second half: falling behind.
    lag: list[int | None] = [max(0, (index - 90) * 66) for index in range(181)]
    figures, problems = lag_verdict(_samples({"p": [1] * 181}, {"loader": lag}), 1800.0, 10_000)
    assert figures["loader"]["max_second_half"] <= 10_000
    assert problems and problems[0].startswith("lag of loader: climbing")


def test_a_group_without_a_reading_in_the_second_half_fails() -> None:
    lag: list[int | None] = [5] * 90 + [None] * 91
    _, problems = lag_verdict(_samples({"p": [1] * 181}, {"inference": lag}), 1800.0, 10_000)
    assert problems == ["lag of inference: no reading in the second half"]


def test_slope() -> None:
    assert slope_per_s([(0, 1), (10, 21), (20, 41)]) == pytest.approx(2.0)
    assert slope_per_s([(5, 3)]) == 0.0
    assert slope_per_s([(5, 3), (5, 9)]) == 0.0


# --- delivery ----------------------------------------------------------------------------------------


CLEAN = {
    "rate": 1500.0,
    "duration_s": 120.0,
    "sent": 180_000,
    "accepted": 161_800,
    "rejected_as_invalid": 8_200,
    "lost": 0,
    "duplicated": 0,
    "not_accepted": 0,
}
"""180,000 sent in 120 s, 10,000 of them resends: every distinct one accepted or refused."""


def test_delivery_clean_run_has_no_problem() -> None:
    assert delivery_problems(CLEAN, resent_events=10_000) == []


def test_delivery_lost_duplicated_and_dlq_gaps_are_problems() -> None:
    figures = {**CLEAN, "lost": 3, "duplicated": 1, "malformed_missing": 2}
    assert delivery_problems(figures, resent_events=10_000) == [
        "3 accepted events lost",
        "1 events duplicated after FINAL",
        "2 malformed events not in dlq_events",
    ]


def test_delivery_an_unanswered_event_is_a_problem() -> None:
    problems = delivery_problems({**CLEAN, "accepted": 161_700}, resent_events=10_000)
    assert problems == ["100 of 170000 distinct events sent got no answer"]


def test_delivery_a_generator_held_back_has_not_sustained_the_rate() -> None:
    problems = delivery_problems({**CLEAN, "duration_s": 140.0}, resent_events=10_000)
    assert len(problems) == 1 and problems[0].startswith("offered 1286/s of 1500/s (below 95%)")


# --- resends ---------------------------------------------------------------------------------------


def test_resent_batches_carry_the_same_event_ids() -> None:
    factory = ResendingFactory(seed=11, malformed_share=0.0, resend_share=1.0, pool_events=2000)
    first = factory.batch(50)
    again = factory.batch(50)  # every batch after the first is a resend
    assert [e["event_id"] for e in again] == [e["event_id"] for e in first]
    assert factory.resent_events == 50


def test_without_resends_every_event_id_is_new() -> None:
    factory = ResendingFactory(seed=11, malformed_share=0.0, resend_share=0.0, pool_events=2000)
    ids = [event["event_id"] for _ in range(10) for event in factory.batch(50)]
    assert len(set(ids)) == 500 and factory.resent_events == 0


# --- /proc -----------------------------------------------------------------------------------------


def _fake_process(proc: Path, pid: int, command: str, group: int, rss: int | None) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(f"{pid} ({command}) S 1 {group} {group} 0 -1 4194560 0 0\n")
    status = "Name:\tx\n" + (f"VmRSS:\t  {rss} kB\n" if rss is not None else "") + "Threads:\t1\n"
    (proc / str(pid) / "status").write_text(status)


def test_a_group_sums_its_processes_whatever_their_names(tmp_path: Path) -> None:
    _fake_process(tmp_path, 100, "java", 100, 500_000)
    _fake_process(tmp_path, 101, "odd) (name", 100, 20_000)  # parentheses inside the command name
    _fake_process(tmp_path, 200, "python", 200, 90_000)
    _fake_process(tmp_path, 2, "kthreadd", 0, None)
    (tmp_path / "self").mkdir()
    groups = process_groups(tmp_path)
    assert sorted(groups[100]) == [100, 101]
    assert group_rss_kb(100, groups, tmp_path) == 520_000
    assert group_rss_kb(200, groups, tmp_path) == 90_000
    assert group_rss_kb(999, groups, tmp_path) is None  # gone
    assert group_rss_kb(None, groups, tmp_path) is None


def test_this_process_on_the_real_proc() -> None:
    own = rss_kb(os.getpid())
    assert own is not None and own > 1000
    group = group_rss_kb(os.getpgrp(), process_groups())
    assert group is None or group >= 0  # the leader may be a shell that has exited
    assert os.getpid() in process_groups()[os.getpgrp()]


# --- the plot --------------------------------------------------------------------------------------


def test_nice_ticks_cover_the_top_at_a_round_step() -> None:
    assert nice_ticks(437.0) == [0, 100, 200, 300, 400, 500]
    assert nice_ticks(30.0, 8) == [0, 5, 10, 15, 20, 25, 30]
    assert nice_ticks(0.0) == [0.0, 1.0]
    ticks = nice_ticks(12_345.0)
    assert ticks[-1] >= 12_345 and ticks[1] - ticks[0] in (2000, 5000)


def _points(polyline: ET.Element) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in polyline.attrib["points"].split())]


def _title(element: ET.Element) -> str | None:
    title = element.find(f"{SVG}title")
    return title.text if title is not None else None


def test_the_svg_draws_a_line_per_series_inside_its_axes_with_a_legend() -> None:
    samples = _samples(
        {"stream": _ramp(100_000, 110_000, 19), "kafka": [400_000] * 19},
        {"loader": [0, 10, None, 30] + [5] * 15},
    )
    svg = render_svg(samples, Windows.of(180.0, Thresholds()), title="soak <test>")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    lines: dict[str | None, list[ET.Element]] = {}
    for line in root.iter(f"{SVG}polyline"):
        lines.setdefault(_title(line), []).append(line)
    # The missing lag reading splits the loader's line in two.
    assert {name: len(runs) for name, runs in lines.items()} == {"stream": 1, "kafka": 1, "loader": 2}
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert {"stream", "kafka", "loader", "soak <test>", "minutes", "MB", "messages"} <= set(texts)
    height = float(root.attrib["height"])
    for line in root.iter(f"{SVG}polyline"):
        for x, y in _points(line):
            assert MARGIN_LEFT <= x <= WIDTH and 0 <= y <= height
    kafka, stream = _points(lines["kafka"][0]), _points(lines["stream"][0])
    # A flat series is drawn flat, above (a smaller y) the smaller one in the same panel.
    assert len({y for _, y in kafka}) == 1
    assert kafka[0][1] < stream[-1][1]
    assert stream[0][1] > stream[-1][1]  # growing memory goes up the page
    marked = [_title(rect) for rect in root.iter(f"{SVG}rect") if _title(rect)]
    assert marked == ["warm-up", "baseline window", "final window"]


def test_the_svg_of_no_samples_is_still_a_document() -> None:
    root = ET.fromstring(render_svg([]))
    assert list(root.iter(f"{SVG}polyline")) == []
