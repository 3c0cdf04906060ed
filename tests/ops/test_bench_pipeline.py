"""The whole-pipeline benchmark's search: which rate it tries next, when it stops, what it reports, and
what counts as a passing trial; a trial's journeys drawn before it is timed; services run from another
checkout. No service runs here; the trials are given as outcomes, the collector and warehouse faked."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import ops.bench.pipeline as bench
from ops.bench.pipeline import Search, max_sustained, next_rate, trial_passed
from ops.load import EventFactory, LoadOptions, SendLog, Verdict

SEARCH = Search(start_rate=2_000, factor=1.5, max_rate=200_000, min_rate=100, bisect_steps=2)


def search_with(capacity: float, search: Search = SEARCH) -> list[tuple[float, bool]]:
    """Every trial the search runs against a pipeline that passes exactly the rates up to ``capacity``."""
    outcomes: list[tuple[float, bool]] = []
    while (rate := next_rate(outcomes, search)) is not None:
        outcomes.append((rate, rate <= capacity))
        assert len(outcomes) < 50, "the search does not end"
    return outcomes


def test_rates_rise_by_the_factor_until_a_fail_then_bisect_between_last_pass_and_first_fail() -> None:
    outcomes = search_with(4_800)
    rates = [rate for rate, _ in outcomes]
    assert rates[:3] == [2_000, 3_000, 4_500]
    assert rates[3] == 6_750 and not outcomes[3][1]
    # Geometric midpoints: between 4,500 (pass) and 6,750 (fail), then the half that holds the answer.
    assert rates[4] == round(math.sqrt(4_500 * 6_750))
    assert rates[5] == round(math.sqrt(4_500 * rates[4]))
    assert len(outcomes) == 6
    assert not any(passed for _, passed in outcomes[3:])
    assert max_sustained(outcomes) == 4_500


def test_the_answer_is_the_highest_pass_once_bisection_finds_one() -> None:
    outcomes = search_with(6_000)
    middle = round(math.sqrt(4_500 * 6_750))
    assert (middle, True) in outcomes
    assert max_sustained(outcomes) == max(rate for rate, passed in outcomes if passed)
    assert 4_500 < max_sustained(outcomes) <= 6_000  # type: ignore[operator]


def test_a_first_fail_makes_the_search_go_down_until_a_pass() -> None:
    # The code before a speed-up may not sustain the start rate: the search still brackets its answer.
    outcomes = search_with(1_000)
    rates = [rate for rate, _ in outcomes]
    assert rates[:3] == [2_000, 1_333, 889]
    assert outcomes[2][1] and not outcomes[1][1]
    assert len(outcomes) == 3 + SEARCH.bisect_steps
    assert all(889 < rate < 1_333 for rate in rates[3:])
    assert 889 <= max_sustained(outcomes) <= 1_000  # type: ignore[operator]


def test_nothing_passing_down_to_the_min_rate_ends_without_an_answer() -> None:
    outcomes = search_with(10, Search(start_rate=2_000, factor=2, min_rate=500))
    assert [rate for rate, _ in outcomes] == [2_000, 1_000, 500]
    assert max_sustained(outcomes) is None


def test_a_pipeline_faster_than_max_rate_stops_at_it() -> None:
    outcomes = search_with(1e9, Search(start_rate=2_000, factor=1.5, max_rate=5_000))
    assert [rate for rate, _ in outcomes] == [2_000, 3_000, 4_500, 5_000]
    assert max_sustained(outcomes) == 5_000


def test_zero_bisect_steps_stops_at_the_first_fail() -> None:
    outcomes = search_with(3_500, Search(start_rate=2_000, factor=1.5, bisect_steps=0))
    assert [rate for rate, _ in outcomes] == [2_000, 3_000, 4_500]
    assert max_sustained(outcomes) == 3_000


def test_bisection_stops_when_pass_and_fail_are_a_step_apart() -> None:
    assert next_rate([(100, True), (101, False)], Search(start_rate=100, bisect_steps=5)) is None


def test_a_pass_above_a_fail_is_noise_not_the_answer() -> None:
    assert max_sustained([(2_000, True), (3_000, False), (2_500, False), (4_000, True)]) == 2_000


def figures(**changes: Any) -> dict[str, Any]:
    passing = {
        "rate": 2_000.0,
        "ok": True,
        "freshness_p99_ms": 1_500.0,
        "not_accepted": 0,
        "accepted_per_s": 1_990.0,
    }
    return {**passing, **changes}


def test_a_trial_passes_only_complete_fresh_and_at_the_rate_offered() -> None:
    assert trial_passed(figures(), max_p99_ms=2_000)
    assert not trial_passed(figures(ok=False), max_p99_ms=2_000)
    assert not trial_passed(figures(freshness_p99_ms=2_000.1), max_p99_ms=2_000)
    assert not trial_passed(figures(freshness_p99_ms=None), max_p99_ms=2_000)
    # Batches the collector refused until load gave up are not "lost" in load's verdict; here they fail.
    assert not trial_passed(figures(not_accepted=100), max_p99_ms=2_000)
    assert not trial_passed(figures(accepted_per_s=1_800.0), max_p99_ms=2_000)
    # A run that broke has no figures but the rate and its error.
    assert not trial_passed({"rate": 2_000.0, "ok": False, "error": "WarehouseUnavailable"}, max_p99_ms=2_000)


def test_a_trial_draws_its_journeys_before_it_is_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    options = LoadOptions(rate=100.0, duration_s=30.0, batch_size=50, seed=31337)
    seen: dict[str, Any] = {}

    async def fake_drive(options: LoadOptions, factory: EventFactory) -> SendLog:
        def no_drawing(*_args: Any, **_kwargs: Any) -> None:
            raise AssertionError("journeys drawn while the trial is timed")

        seen["pooled"] = factory.pooled
        log = SendLog(sending_s=options.duration_s)
        with monkeypatch.context() as timed:
            timed.setattr("ops.load.journeys", no_drawing)
            for _ in range(int(options.rate * options.duration_s / options.batch_size) + 1):
                for event in factory.batch(options.batch_size):
                    log.accepted_at_ms[event["event_id"]] = 0.0
        log.sent_events = len(log.accepted_at_ms)
        return log

    def fake_verify(_warehouse: Any, factory: EventFactory, log: SendLog, _timeout_s: float) -> Verdict:
        seen["prefix"] = factory.prefix
        return Verdict(len(log.accepted_at_ms), len(log.accepted_at_ms), [], [], [], 0, 0, 0, 0, [], [], {})

    monkeypatch.setattr(bench, "drive", fake_drive)
    monkeypatch.setattr(bench, "verify", fake_verify)
    figures = bench.run_trial(options, "http://127.0.0.1:1", "key", verify_timeout_s=0, prefill_cap=10**6)
    assert seen["pooled"] >= 3_300 == bench.prefill_events(100.0, 30.0)
    assert figures["prefill_events"] == seen["pooled"]
    assert figures["run"] == seen["prefix"].rstrip("-") == "anon-31337"
    assert figures["accepted"] == 3_050 and figures["ok"]


def test_prefill_covers_the_trial_with_a_margin_up_to_the_cap() -> None:
    assert bench.prefill_events(1_000.0, 60.0) == 66_000
    assert bench.prefill_events(50_000.0, 60.0, cap=1_500_000) == 1_500_000


def test_services_from_a_checkout_import_its_code_not_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "__init__.py").write_text("")
    (tmp_path / "ops" / "cli.py").write_text("")
    # From this checkout's root, as make runs the bench: its own ops/ is what a plain -m child imports.
    root = Path(bench.__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    env = bench.services_env(tmp_path)
    assert Path(env["FS_PATHS__DATA_DIR"]).is_absolute() and Path(env["FS_STACK__DIR"]).is_absolute()
    assert bench.services_code(env) == str(tmp_path / "ops" / "cli.py")
    assert bench.services_code({}) == str(root / "ops" / "cli.py")


def test_the_environment_for_the_services_is_undone_after_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_PATHS__DATA_DIR", "/before")
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    with bench.environment({"FS_PATHS__DATA_DIR": "/during", "PYTHONSAFEPATH": "1"}):
        assert os.environ["FS_PATHS__DATA_DIR"] == "/during" and os.environ["PYTHONSAFEPATH"] == "1"
    assert os.environ["FS_PATHS__DATA_DIR"] == "/before"
    assert "PYTHONSAFEPATH" not in os.environ


def test_services_from_names_the_commit_and_says_when_the_tree_differs(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a")
    commit = git("rev-parse", "--short", "HEAD").strip()
    assert bench._git_commit(tmp_path) == commit
    (tmp_path / "a.py").write_text("x = 2\n")
    assert bench._git_commit(tmp_path) == f"{commit}+changes"
