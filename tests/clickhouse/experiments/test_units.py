"""Per-unit values: one definition of each metric's numerator and denominator, post and pre alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clickhouse.experiments.units import members, metric_rows, unit_values

VARIANTS = ["control", "treatment"]


def at(*times: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(times), utc=True))


def units() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "anonymous_id": ["a", "b", "c", "x"],
            "variant": ["control", "treatment", "control", "elsewhere"],
            "first_exposure_at": at("2026-01-01", "2026-01-02", "2026-01-01", "2026-01-01"),
            "contaminated": [False, False, True, False],
        }
    )


def events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "anonymous_id": ["a", "a", "a", "b", "b", "b", "c"],
            "event_type": [
                "image_saved",
                "score_submitted",
                "inference_completed",
                "image_saved",
                "inference_completed",
                "inference_completed",
                "image_saved",
            ],
            "score": [None, 4.0, None, None, None, None, None],
            "status": ["", "", "ok", "", "failed", "ok", ""],
            "event_ts": at(*(["2026-01-01 05:00"] * 3 + ["2026-01-03 05:00"] * 3 + ["2026-01-01 05:00"])),
        }
    )


def durations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "input_id": ["i1", "i2", "i3", "i4"],
            "anonymous_id": ["a", "a", "b", "c"],
            "diff_second": [30.0, None, 10.0, 99.0],
            "saved_at": at("2026-01-01 06:00", "2026-01-01 06:00", "2026-01-03 06:00", "2026-01-01 06:00"),
        }
    )


def test_clean_units_in_named_arms_only_each_metric_defined_once() -> None:
    clean = members(units(), VARIANTS)
    assert list(clean.ids) == ["a", "b"] and list(clean.variant) == VARIANTS
    rows = metric_rows(events(), durations(), clean)
    values = {name: tuple(map(list, unit_values(r, len(clean)))) for name, r in rows.items()}
    assert values["conversion_save"] == ([1.0, 1.0], [1.0, 1.0])
    assert values["conversion_score"] == ([1.0, 0.0], [1.0, 1.0])
    assert values["conversion_upload"] == ([0.0, 0.0], [1.0, 1.0])
    assert values["mean_score"] == ([4.0, 0.0], [1.0, 0.0])
    assert values["inference_failure_rate"] == ([0.0, 1.0], [1.0, 2.0])
    # The image without a counted save is not in task time; the contaminated unit's is not either.
    assert values["task_duration_s"] == ([30.0, 10.0], [1.0, 1.0])


def test_bounds_cut_rows_by_time_globally_or_per_unit() -> None:
    clean = members(units(), VARIANTS)
    rows = metric_rows(events(), durations(), clean)
    cut = np.datetime64("2026-01-02T00:00", "ms")
    assert list(unit_values(rows["conversion_save"], 2, until=cut)[0]) == [1.0, 0.0]
    assert list(unit_values(rows["task_duration_s"], 2, since=cut)[1]) == [0.0, 1.0]
    # Per unit: each unit's own first day after its exposure.
    day_end = clean.first_exposure + np.timedelta64(1, "D")
    assert list(unit_values(rows["inference_failure_rate"], 2, until=day_end)[1]) == [1.0, 0.0]


def test_a_frame_without_times_or_status_still_gives_the_totals() -> None:
    clean = members(units(), VARIANTS)
    bare = events().drop(columns=["event_ts", "status"])
    rows = metric_rows(bare, durations().drop(columns=["saved_at"]), clean)
    numerator, denominator = unit_values(rows["inference_failure_rate"], 2)
    assert list(numerator) == [0.0, 0.0] and list(denominator) == [1.0, 2.0]
    assert unit_values(rows["mean_score"], 2)[0][0] == pytest.approx(4.0)
