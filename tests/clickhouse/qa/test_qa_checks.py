"""Each QA check, on a warehouse filled as the pipeline fills it: silent on clean data, firing
once its defect is planted. Built by the real migrations in an embedded ClickHouse."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from clickhouse.backend import ChdbWarehouse
from clickhouse.qa.checks import CHECKS, Check
from clickhouse.qa.runner import Status, run_check, run_checks, write_results
from funnelstream.contract import EnrichedEvent, SessionSummary, TimestampFlag
from tests.helpers.qa_warehouse import (
    NOW,
    enrich,
    load_dead_letters,
    load_events,
    load_sessions,
    open_warehouse,
    session_of,
    simulated,
)

pytestmark = pytest.mark.integration

WINDOW = (NOW - timedelta(hours=8), NOW)
CHECK = {check.name: check for check in CHECKS}


@cache
def small_dataset() -> tuple[tuple[EnrichedEvent, ...], tuple[SessionSummary, ...]]:
    events, sessions = simulated(users=300, window=timedelta(hours=6), now=NOW)
    return tuple(events), tuple(sessions)


@cache
def week_dataset() -> tuple[tuple[EnrichedEvent, ...], tuple[SessionSummary, ...]]:
    events, sessions = simulated(users=4000, window=timedelta(days=8), now=NOW, seed=3)
    return tuple(events), tuple(sessions)


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[ChdbWarehouse]:
    wh = open_warehouse(tmp_path / "chdb")
    events, sessions = small_dataset()
    load_events(wh, events)
    load_sessions(wh, sessions)
    yield wh
    wh.close()


def _events_of(kind: str) -> list[EnrichedEvent]:
    return [e for e in small_dataset()[0] if e.event_type == kind]


def _raw(kind: str, *, at: datetime, anonymous_id: str = "planted-device", **fields: object) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": kind,
        "anonymous_id": anonymous_id,
        "client_ts": at.isoformat(),
        "sent_at": (at + timedelta(seconds=1)).isoformat(),
        **fields,
    }


def _planted(kind: str, *, at: datetime, **fields: object) -> EnrichedEvent:
    received = at + timedelta(seconds=1, milliseconds=100)
    return enrich(_raw(kind, at=at, **fields), session_id="planted-session", received_at=received)


def assert_fires(warehouse: ChdbWarehouse, check: Check, plant: Callable[[], None], expect: str) -> None:
    before = run_check(warehouse, check, *WINDOW)
    assert before.status is Status.PASS, (before.error, before.failing)
    plant()
    after = run_check(warehouse, check, *WINDOW)
    assert after.status is Status.FAIL, (after.error, after.rows[:3])
    assert any(expect in finding.subject for finding in after.failing), [f.subject for f in after.failing]


def test_schema_violations_fire_per_source_and_reason(warehouse: ChdbWarehouse) -> None:
    at = NOW - timedelta(hours=1)
    letters = [
        {
            "source": "web",
            "reason": "invalid_event",
            "errors": [{"field": "client_ts", "reason": "outside 2015..now+365d"}],
            "failed_at": at.isoformat(),
        }
        for _ in range(60)
    ]
    assert_fires(
        warehouse,
        CHECK["schema_violations"],
        lambda: load_dead_letters(warehouse, letters),
        "ingest / web / invalid_event [client_ts]",
    )


def test_a_tool_click_on_an_image_never_uploaded_is_an_orphan(warehouse: ChdbWarehouse) -> None:
    at = NOW - timedelta(hours=2)
    orphans = [_planted("tool_selected", at=at, input_id=str(uuid.uuid4()), tool_id=1) for _ in range(10)]
    assert_fires(
        warehouse,
        CHECK["orphan_steps"],
        lambda: load_events(warehouse, orphans),
        "tool_selected without an upload of its image",
    )


def test_a_save_without_an_inference_of_its_job_is_an_orphan(warehouse: ChdbWarehouse) -> None:
    uploads = _events_of("image_uploaded")[:10]
    saves = [
        _planted(
            "image_saved", at=u.client_ts + timedelta(minutes=5), input_id=str(u.input_id), job_id=str(uuid.uuid4())
        )
        for u in uploads
    ]
    assert_fires(
        warehouse,
        CHECK["orphan_steps"],
        lambda: load_events(warehouse, saves),
        "image_saved without an inference of its job",
    )


def test_a_tool_click_before_the_upload_is_out_of_order(warehouse: ChdbWarehouse) -> None:
    uploads = _events_of("image_uploaded")[:12]
    early = [
        _planted("tool_selected", at=u.event_ts - timedelta(minutes=1), input_id=str(u.input_id), tool_id=2)
        for u in uploads
    ]
    assert_fires(
        warehouse,
        CHECK["steps_out_of_order"],
        lambda: load_events(warehouse, early),
        "tool_selected before image_uploaded",
    )


def test_the_same_event_id_loaded_twice_is_a_duplicate_until_merged(warehouse: ChdbWarehouse) -> None:
    warehouse.command("SYSTEM STOP MERGES events")
    resent = _events_of("tool_selected")[:20]
    assert_fires(
        warehouse,
        CHECK["duplicates"],
        lambda: load_events(warehouse, resent),
        "tool_selected: same event_id stored more than once",
    )


def test_a_resend_under_a_new_event_id_is_a_duplicate(warehouse: ChdbWarehouse) -> None:
    resent = [e.model_copy(update={"event_id": uuid.uuid4()}) for e in _events_of("image_uploaded")[:20]]
    assert_fires(
        warehouse,
        CHECK["duplicates"],
        lambda: load_events(warehouse, resent),
        "image_uploaded: same content under different event_ids",
    )


def test_events_older_than_the_late_limit_fire_late_events(warehouse: ChdbWarehouse) -> None:
    received = NOW - timedelta(hours=1)
    late = []
    for index in range(100):
        happened = received - timedelta(days=8, minutes=index)
        raw = _raw("experiment_exposure", at=happened, experiment_key="segmentation-tool", variant="control")
        raw["sent_at"] = (received - timedelta(seconds=1)).isoformat()
        late.append(enrich(raw, session_id="offline-device", received_at=received))
    assert all(e.timestamp_flag is TimestampFlag.TOO_OLD for e in late)
    assert_fires(warehouse, CHECK["late_events"], lambda: load_events(warehouse, late), "web")


def test_session_late_events_fire_late_events(warehouse: ChdbWarehouse) -> None:
    late = [e.model_copy(update={"event_id": uuid.uuid4(), "is_late": True}) for e in _events_of("image_uploaded")[:80]]
    assert_fires(warehouse, CHECK["late_events"], lambda: load_events(warehouse, late), "web")


def test_a_device_clock_hours_ahead_fires_clock_skew(warehouse: ChdbWarehouse) -> None:
    received = NOW - timedelta(hours=1)
    skewed = []
    for index in range(30):
        device_now = received + timedelta(hours=3)
        raw = _raw(
            "experiment_exposure",
            at=device_now - timedelta(seconds=index),
            experiment_key="segmentation-tool",
            variant="control",
        )
        raw["sent_at"] = device_now.isoformat()
        skewed.append(enrich(raw, session_id="kiosk-session", received_at=received, source="kiosk"))
    assert all(
        abs((e.event_ts - (received - timedelta(seconds=i))).total_seconds()) < 0.01 for i, e in enumerate(skewed)
    )
    assert_fires(warehouse, CHECK["clock_skew"], lambda: load_events(warehouse, skewed), "kiosk")
    detail = next(f.detail for f in run_check(warehouse, CHECK["clock_skew"], *WINDOW).rows if f.subject == "kiosk")
    assert "p50 10800" in detail


def test_events_flagged_future_fire_future_timestamps(warehouse: ChdbWarehouse) -> None:
    future = [
        e.model_copy(update={"event_id": uuid.uuid4(), "timestamp_flag": TimestampFlag.FUTURE})
        for e in _events_of("tool_selected")[:5]
    ]
    assert_fires(warehouse, CHECK["future_timestamps"], lambda: load_events(warehouse, future), "web")


def test_an_event_time_after_receipt_fires_future_timestamps(warehouse: ChdbWarehouse) -> None:
    future = [
        e.model_copy(update={"event_id": uuid.uuid4(), "event_ts": e.received_at + timedelta(hours=1)})
        for e in _events_of("tool_selected")[:5]
    ]
    assert_fires(warehouse, CHECK["future_timestamps"], lambda: load_events(warehouse, future), "web")


def test_an_unknown_tool_id_fires_unknown_dimensions(warehouse: ChdbWarehouse) -> None:
    upload = _events_of("image_uploaded")[0]
    unknown = [
        _planted("tool_selected", at=upload.client_ts + timedelta(seconds=5), input_id=str(upload.input_id), tool_id=99)
    ]
    assert unknown[0].unknown_dimension
    assert_fires(
        warehouse,
        CHECK["unknown_dimensions"],
        lambda: load_events(warehouse, unknown),
        "tool_selected: unknown tool_id 99",
    )


def test_an_inference_event_without_its_id_fires_unknown_dimensions(warehouse: ChdbWarehouse) -> None:
    missing = [_events_of("inference_requested")[0].model_copy(update={"event_id": uuid.uuid4(), "inference_id": None})]
    assert_fires(
        warehouse,
        CHECK["unknown_dimensions"],
        lambda: load_events(warehouse, missing),
        "inference_requested: missing inference_id",
    )


def test_a_session_whose_events_never_arrived_fires(warehouse: ChdbWarehouse) -> None:
    at = NOW - timedelta(hours=3)
    lost = [_planted("experiment_exposure", at=at, experiment_key="segmentation-tool", variant="control")]
    orphan_session = session_of(lost, session_id="lost-session")
    assert_fires(
        warehouse,
        CHECK["sessions_without_events"],
        lambda: load_sessions(warehouse, [orphan_session]),
        "sessions without events",
    )


def test_inference_requests_without_a_completion_fire(warehouse: ChdbWarehouse) -> None:
    uploads = _events_of("image_uploaded")[:10]
    requests = [
        _planted(
            "inference_requested",
            at=u.client_ts + timedelta(minutes=1),
            input_id=str(u.input_id),
            inference_id=2,
            job_id=str(uuid.uuid4()),
        )
        for u in uploads
    ]
    assert_fires(
        warehouse,
        CHECK["inference_without_result"],
        lambda: load_events(warehouse, requests),
        "inference_requested enhance without inference_completed",
    )


def test_a_clean_week_passes_every_check_and_is_recorded(tmp_path: Path) -> None:
    wh = open_warehouse(tmp_path / "chdb")
    try:
        events, sessions = week_dataset()
        load_events(wh, events)
        load_sessions(wh, sessions)
        window = (NOW - timedelta(hours=26), NOW - timedelta(hours=2))
        run = run_checks(wh, CHECKS, *window)
        bad = {r.check.name: (r.error, r.failing[:2]) for r in run.results if r.status is not Status.PASS}
        assert not bad
        judged = next(r for r in run.results if r.check.name == "volume_anomalies")
        assert len(judged.rows) >= 24, "the volume check judged too few hours to mean anything"
        assert write_results(wh, run) == len(CHECKS)
        stored = wh.query_rows(
            "SELECT check_name, status, window_from FROM qa_results WHERE run_id = {run_id:UUID}",
            {"run_id": run.run_id},
        )
        assert {row["check_name"] for row in stored} == {c.name for c in CHECKS}
        assert {row["status"] for row in stored} == {"pass"}
        assert stored[0]["window_from"] == window[0]
    finally:
        wh.close()


def test_an_hour_of_lost_uploads_is_a_volume_anomaly(tmp_path: Path) -> None:
    wh = open_warehouse(tmp_path / "chdb")
    try:
        events, _ = week_dataset()
        load_events(wh, events)
        window = (NOW - timedelta(hours=26), NOW - timedelta(hours=2))
        check = CHECK["volume_anomalies"]
        assert run_check(wh, check, *window).status is Status.PASS
        lost_hour = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
        wh.command(
            "DELETE FROM events WHERE event_type = 'image_uploaded'"
            " AND toStartOfHour(event_ts) = {hour:DateTime64(3, 'UTC')}",
            {"hour": lost_hour},
        )
        after = run_check(wh, check, *window)
        assert after.status is Status.FAIL
        assert [f.subject for f in after.failing] == ["image_uploaded at 2026-11-26 05:00 UTC"]
    finally:
        wh.close()


def test_a_failing_check_is_recorded_with_its_worst_findings(warehouse: ChdbWarehouse) -> None:
    import json

    at = NOW - timedelta(hours=2)
    load_events(warehouse, [_planted("tool_selected", at=at, input_id=str(uuid.uuid4()), tool_id=1) for _ in range(9)])
    run = run_checks(warehouse, [CHECK["orphan_steps"], CHECK["late_events"]], *WINDOW)
    assert write_results(warehouse, run) == 2
    rows = warehouse.query_rows(
        "SELECT check_name, status, subject, affected, failing_subjects, details FROM qa_results "
        "WHERE run_id = {run_id:UUID} ORDER BY check_name",
        {"run_id": run.run_id},
    )
    late, orphans = rows
    assert (late["check_name"], late["status"], late["failing_subjects"]) == ("late_events", "pass", 0)
    assert orphans["status"] == "fail" and orphans["affected"] == 9
    assert orphans["subject"] == "tool_selected without an upload of its image"
    details = json.loads(orphans["details"])
    assert [f["subject"] for f in details["findings"]] == ["tool_selected without an upload of its image"]
    assert details["findings"][0]["detail"].startswith("e.g. event_id ")


UPLOAD_FIELDS: dict[str, object] = {
    "input_url": "s3://b/inputs/planted.png",
    "width": 64,
    "height": 64,
    "size_bytes": 1024,
    "content_type": "image/png",
}


def test_a_batch_sent_without_sent_at_fires_zero_gap_steps(warehouse: ChdbWarehouse) -> None:
    # Without sent_at every event of a batch gets the batch's receipt time.
    received = NOW - timedelta(hours=2)
    batch = []
    for index in range(60):
        image = str(uuid.uuid4())
        happened = received - timedelta(minutes=10, seconds=index)
        steps: list[tuple[str, dict[str, object]]] = [
            ("image_uploaded", UPLOAD_FIELDS),
            ("tool_selected", {"tool_id": 1}),
            ("inference_requested", {"inference_id": 1, "job_id": str(uuid.uuid4())}),
        ]
        for offset, (kind, fields) in enumerate(steps):
            raw = {**_raw(kind, at=happened + timedelta(seconds=20 * offset), input_id=image), **fields}
            del raw["sent_at"]
            batch.append(enrich(raw, session_id="planted-session", received_at=received))
    assert {event.event_ts for event in batch} == {received}

    def plant() -> None:
        load_events(warehouse, batch)

    assert_fires(warehouse, CHECK["zero_gap_steps"], plant, "web")
    finding = next(f for f in run_check(warehouse, CHECK["zero_gap_steps"], *WINDOW).failing if f.subject == "web")
    assert finding.affected == 120
    assert finding.detail.startswith("120 of them sent without sent_at")
