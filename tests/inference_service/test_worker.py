"""The worker's bookkeeping, in memory: which offset is safe to commit while jobs run out of order."""

from __future__ import annotations

from inference_service.worker import OffsetTracker


def test_commit_stops_below_the_lowest_job_still_running() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started(0, offset)
    tracker.started(1, 5)

    tracker.finished(0, 11)
    tracker.finished(0, 12)
    assert tracker.committable() == {0: 10, 1: 5}
    tracker.mark_committed({0: 10, 1: 5})
    assert tracker.committable() == {}, "nothing new is safe while offset 10 runs"

    tracker.finished(0, 10)
    assert tracker.committable() == {0: 13}
    assert tracker.busy({1}) and not tracker.busy({0})


def test_a_revoked_partition_is_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.started(3, 100)
    tracker.forget({3})
    assert tracker.committable() == {} and not tracker.busy()
