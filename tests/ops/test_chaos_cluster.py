"""The short form of ``broker_kill`` on a private three-node cluster: the broker leading the most
partitions of events.raw is killed under load, then restarted.

Nothing accepted is lost or duplicated, the collector answers 503 only while an event's partition
cannot take an acks=all write, a new leader takes 202s within the broker's session timeout, and every
service keeps its process and its progress (jobs submitted after the fault each get one result).
"""

from __future__ import annotations

import pytest

from ops.chaos import SHORT_BROKER_KILL, ScenarioReport, run_chaos

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def broker_kill(kafka, s3) -> ScenarioReport:  # type: ignore[no-untyped-def]
    # kafka and s3: the shared stack's binaries are resolved and built first; the run uses its own ports.
    (report,) = run_chaos(SHORT_BROKER_KILL)
    return report


def test_a_killed_broker_loses_and_duplicates_nothing(broker_kill: ScenarioReport) -> None:
    figures = broker_kill.figures
    assert broker_kill.ok, f"{broker_kill.problems}\nfigures: {figures}"
    assert figures["brokers"] == 3
    assert figures["accepted"] > 500
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["unexpected"] == 0
    assert figures["visible"] == figures["accepted"] == figures["rows_final"]
    assert figures["malformed_in_dlq"] == figures["malformed_sent"] > 0
    assert figures["probe"]["lost"] == 0 and figures["probe"]["duplicated"] == 0


def test_the_new_leader_takes_writes_and_the_old_one_rejoins(broker_kill: ScenarioReport) -> None:
    fault = broker_kill.figures["fault"]
    assert fault["partitions_it_led"], "the killed node led no partition of events.raw"
    # Leadership moves once the controller fences the node (broker.session.timeout.ms, 9 s).
    assert fault["leader_moved_s"] < 30
    first_202 = fault["kill_to_first_202_on_new_leader_s"]
    assert first_202 is not None and first_202 < 30
    assert fault["back_in_sync_s"] < 120
    # A 503 only while the event's partition could not take an acks=all write (a dead replica in sync).
    assert broker_kill.figures["probe_503_while_writable"] == 0


def test_every_consumer_keeps_going_without_a_restart(broker_kill: ScenarioReport) -> None:
    jobs = broker_kill.figures["jobs"]
    assert jobs["submitted"] == SHORT_BROKER_KILL.jobs
    assert jobs["results_per_job"] == {"1": SHORT_BROKER_KILL.jobs}
    assert jobs["statuses"] == {"succeeded": SHORT_BROKER_KILL.jobs}
    assert not [problem for problem in broker_kill.problems if "pids" in problem]
