"""The short form of ``make chaos`` on one broker: every fault under load, then exact counts by event_id.

One private stack and pipeline run all scenarios in turn (the same code as ``funnelstream chaos``);
each scenario is then one test, so a failure names the fault that lost or duplicated something.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.chaos import SHORT, ScenarioReport, run_chaos

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def chaos_reports(kafka, s3) -> Iterator[dict[str, ScenarioReport]]:  # type: ignore[no-untyped-def]
    # kafka and s3: the shared stack's binaries are resolved and built first; the run uses its own ports.
    yield {report.scenario: report for report in run_chaos(SHORT)}


@pytest.mark.parametrize("scenario", SHORT.scenarios)
def test_every_accepted_event_is_in_clickhouse_exactly_once(
    chaos_reports: dict[str, ScenarioReport], scenario: str
) -> None:
    report = chaos_reports[scenario]
    figures = report.figures
    assert report.ok, f"{scenario}: {report.problems}\nfigures: {figures}"
    # The fault really happened under load, and the load was real.
    assert figures["fault"]
    assert figures["accepted"] > 1000
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["unexpected"] == 0
    assert figures["visible"] == figures["accepted"] == figures["rows_final"]
    assert figures["malformed_sent"] > 0
    assert figures["malformed_in_dlq"] == figures["malformed_sent"]


def test_the_broker_outage_was_answered_with_retries_not_losses(chaos_reports: dict[str, ScenarioReport]) -> None:
    figures = chaos_reports["kafka_outage"].figures
    assert figures["fault"]["down_s"] >= SHORT.outage_s
    # While the broker was away the collector said 503 (never 202) and the clients sent again.
    assert figures["answers"].get("503", 0) > 0
    assert figures["retries"] > 0


def test_each_inference_job_ends_with_exactly_one_result(chaos_reports: dict[str, ScenarioReport]) -> None:
    jobs = chaos_reports["s3_outage_jobs"].figures["jobs"]
    assert jobs["submitted"] == SHORT.jobs
    assert jobs["results_per_job"] == {"1": SHORT.jobs}
    assert jobs["statuses"] == {"succeeded": SHORT.jobs}
