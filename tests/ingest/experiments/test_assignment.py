from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from funnelstream.contract import ExperimentExposure, event_to_json, parse_event_json
from funnelstream.errors import DeliveryError
from funnelstream.experiments.definitions import Definitions, Experiment
from funnelstream.experiments.hashing import gb_hash
from ingest.experiments.assignment import Assigner, AssignmentSource, hash_assignment
from ingest.experiments.exposures import ExposureLogger
from ingest.experiments.store import (
    AssignmentStore,
    MemoryAssignmentStore,
    SqliteAssignmentStore,
    StoredAssignment,
)
from tests.helpers.experiment_fixtures import make_experiment

UNITS = [f"device-{i}" for i in range(2000)]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AssignmentStore]:
    if request.param == "memory":
        yield MemoryAssignmentStore()
    else:
        sqlite = SqliteAssignmentStore(tmp_path / "assignments.sqlite3")
        yield sqlite
        sqlite.close()


def assigner_for(store: AssignmentStore, *experiments: Experiment) -> Assigner:
    definitions = Definitions(version=1, experiments=list(experiments))
    return Assigner(lambda: definitions, store)


def test_hash_assignment_is_growthbooks_bucketing(experiment: Experiment) -> None:
    for unit in UNITS[:200]:
        bucket = gb_hash("segmentation_tool", unit, 2)
        assert bucket is not None
        expected = "control" if bucket < 0.5 else "treatment"
        assert hash_assignment(experiment, unit).variant == expected


def test_split_follows_weights() -> None:
    experiment = make_experiment(variants=[{"key": "control", "weight": 0.2}, {"key": "treatment", "weight": 0.8}])
    variants = [hash_assignment(experiment, unit).variant for unit in UNITS]
    assert 0.17 < variants.count("control") / len(UNITS) < 0.23


def test_raising_coverage_never_moves_a_unit_between_arms() -> None:
    low = make_experiment(coverage=0.3)
    high = make_experiment(coverage=0.9)
    before = {unit: hash_assignment(low, unit).variant for unit in UNITS}
    after = {unit: hash_assignment(high, unit).variant for unit in UNITS}
    included = [unit for unit, variant in before.items() if variant is not None]
    assert 0.25 < len(included) / len(UNITS) < 0.35
    assert all(after[unit] == before[unit] for unit in included)


def test_namespaces_keep_experiments_mutually_exclusive(store: AssignmentStore) -> None:
    first = make_experiment(key="a", namespace={"name": "editor", "start": 0.0, "end": 0.5})
    second = make_experiment(key="b", namespace={"name": "editor", "start": 0.5, "end": 1.0})
    assigner = assigner_for(store, first, second)
    in_first = in_second = 0
    for unit in UNITS[:500]:
        entered = {a.experiment_key for a in assigner.assign_running(unit) if a.in_experiment}
        assert entered != {"a", "b"}
        in_first += "a" in entered
        in_second += "b" in entered
    assert in_first > 200 and in_second > 200


def test_forced_variant_for_qa(store: AssignmentStore) -> None:
    experiment = make_experiment(forced_variants={"qa-device": "treatment", "qa-user": "control"})
    assigner = assigner_for(store, experiment)
    assert assigner.assign(experiment, "qa-device").variant == "treatment"
    forced = assigner.assign(experiment, "qa-device", user_id="qa-user")
    assert (forced.variant, forced.source) == ("control", AssignmentSource.FORCED)


def test_a_forced_qa_assignment_is_answered_but_never_exposed(store: AssignmentStore) -> None:
    experiment = make_experiment(forced_variants={"qa-device": "treatment"})
    assignment = assigner_for(store, experiment).assign(experiment, "qa-device")
    assert (assignment.variant, assignment.source) == ("treatment", AssignmentSource.FORCED)
    sent: list[ExperimentExposure] = []
    logger = ExposureLogger(store, sent.append)
    assert asyncio.run(logger.log(assignment, "qa-device")) is False
    assert sent == []
    # Nothing was claimed either: the device's exposure mark is still free.
    assert store.mark_exposed(experiment.key, experiment.phase, "qa-device") is True


def device_in(experiment: Experiment, variant: str) -> str:
    return next(unit for unit in UNITS if hash_assignment(experiment, unit).variant == variant)


def test_a_user_keeps_the_first_arm_on_every_device(store: AssignmentStore, experiment: Experiment) -> None:
    assigner = assigner_for(store, experiment)
    laptop, phone = device_in(experiment, "control"), device_in(experiment, "treatment")

    assert assigner.assign(experiment, laptop).variant == "control"
    # Login on the laptop: the unit stays the device, and the user is pinned to its arm.
    assert assigner.assign(experiment, laptop, user_id="ada").variant == "control"
    # Login on a phone that hashes to treatment: the user's arm wins.
    on_phone = assigner.assign(experiment, phone, user_id="ada")
    assert (on_phone.variant, on_phone.source) == ("control", AssignmentSource.USER_STICKY)
    # ... and the phone stays there after logout.
    after_logout = assigner.assign(experiment, phone)
    assert (after_logout.variant, after_logout.source) == ("control", AssignmentSource.DEVICE_STICKY)
    # Another user on their own phone is untouched.
    assert assigner.assign(experiment, phone.replace("device", "other"), user_id="bob").variant is not None


def test_first_writer_wins_for_a_user(store: AssignmentStore) -> None:
    first = store.put_if_absent(StoredAssignment("seg", "user:ada", "control", 1))
    second = store.put_if_absent(StoredAssignment("seg", "user:ada", "treatment", 1))
    assert first.variant == second.variant == "control"
    # A later phase replaces an assignment made under the old weights.
    third = store.put_if_absent(StoredAssignment("seg", "user:ada", "treatment", 2))
    assert (third.variant, third.phase) == ("treatment", 2)


def test_a_sticky_assignment_from_an_old_phase_is_not_used(store: AssignmentStore) -> None:
    phase2 = make_experiment(phase=2, phase_start=datetime(2026, 11, 20, tzinfo=UTC))
    device = device_in(phase2, "control")
    store.put_if_absent(StoredAssignment(phase2.key, "user:ada", "treatment", 1))
    assert assigner_for(store, phase2).assign(phase2, device, user_id="ada").variant == "control"


def test_sqlite_store_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "assignments.sqlite3"
    first = SqliteAssignmentStore(path)
    first.put_if_absent(StoredAssignment("seg", "user:ada", "treatment", 1))
    assert first.mark_exposed("seg", 1, "device-1") is True
    first.close()
    reopened = SqliteAssignmentStore(path)
    assert reopened.get("seg", "user:ada") == StoredAssignment("seg", "user:ada", "treatment", 1)
    assert reopened.mark_exposed("seg", 1, "device-1") is False
    reopened.close()


def test_exposure_is_logged_once_per_unit_and_experiment(store: AssignmentStore, experiment: Experiment) -> None:
    sent: list[ExperimentExposure] = []
    logger = ExposureLogger(store, sent.append)
    assignment = assigner_for(store, experiment).assign(experiment, "device-7", user_id="ada")

    async def scenario() -> list[bool]:
        return [await logger.log(assignment, "device-7", "ada") for _ in range(3)]

    assert asyncio.run(scenario()) == [True, False, False]
    assert len(sent) == 1
    event = sent[0]
    assert (event.experiment_key, event.variant, event.anonymous_id, event.user_id) == (
        "segmentation_tool",
        assignment.variant,
        "device-7",
        "ada",
    )
    assert event.experiments == {"segmentation_tool": assignment.variant}
    # It is a valid contract event, and its id is stable so a re-send collapses in dedup.
    assert parse_event_json(event_to_json(event)) == event
    again = ExposureLogger(MemoryAssignmentStore(), sent.append)
    asyncio.run(again.log(assignment, "device-7", "ada"))
    assert sent[1].event_id == event.event_id


def test_a_failed_exposure_is_retried_on_the_next_request(store: AssignmentStore, experiment: Experiment) -> None:
    assignment = hash_assignment(experiment, "device-9")
    failures = [DeliveryError("events.raw", "broker down", retriable=True)]
    sent: list[ExperimentExposure] = []

    async def sink(event: ExperimentExposure) -> None:
        if failures:
            raise failures.pop()
        sent.append(event)

    logger = ExposureLogger(store, sink)
    with pytest.raises(DeliveryError):
        asyncio.run(logger.log(assignment, "device-9"))
    assert asyncio.run(logger.log(assignment, "device-9")) is True
    assert len(sent) == 1
