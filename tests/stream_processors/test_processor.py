"""The processing core in memory: dedup, enrichment, sessions, dead letters, replay."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest

from funnelstream.contract import EnrichedEvent, SessionSummary
from funnelstream.deadletter import decode, original_payload
from stream_processors.dimensions import SEED_FILE, DimensionStore, apply_all, read_dimension_file
from stream_processors.enrich import Enricher, UserAgentParser
from stream_processors.processor import (
    MemoryStateStore,
    Output,
    RawRecord,
    SessionRules,
    StreamProcessor,
    pack_ids,
    session_id_for,
    unpack_ids,
)
from tests.helpers.examples import example
from tests.helpers.stamped_events import T0, stamped


class Harness:
    def __init__(self, rules: SessionRules | None = None) -> None:
        self.store = MemoryStateStore()
        self.dimensions = DimensionStore()
        apply_all(self.dimensions, read_dimension_file(SEED_FILE, T0))
        self.enricher = Enricher(self.dimensions, UserAgentParser(100))
        self.processor = StreamProcessor(self.store, self.enricher, rules, clock=lambda: T0)
        self.offsets: dict[int, int] = {}

    def record(self, event: dict[str, Any] | bytes, partition: int = 0) -> RawRecord:
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        value = event if isinstance(event, bytes) else orjson.dumps(event)
        key = b"k" if isinstance(event, bytes) else event["anonymous_id"].encode()
        return RawRecord(partition, offset, key, value, "events.raw")

    def run_records(self, records: list[RawRecord]) -> Output:
        out = self.processor.process(records)
        self.processor.commit(out)
        return out

    def run(self, *events: dict[str, Any] | bytes, partition: int = 0) -> Output:
        out = self.processor.process([self.record(event, partition) for event in events])
        self.processor.commit(out)
        return out


def enriched(out: Output) -> list[EnrichedEvent]:
    return [EnrichedEvent.model_validate_json(value) for _, value in out.enriched]


def summaries(out: Output) -> dict[str, SessionSummary]:
    latest: dict[str, SessionSummary] = {}
    for _, value in out.sessions:
        summary = SessionSummary.model_validate_json(value)
        if summary.session_id not in latest or latest[summary.session_id].version < summary.version:
            latest[summary.session_id] = summary
    return latest


def test_every_event_type_becomes_a_valid_enriched_row() -> None:
    harness = Harness()
    kinds = [
        "image_uploaded",
        "tool_selected",
        "segments_proposed",
        "inference_requested",
        "inference_completed",
        "image_saved",
        "score_submitted",
        "experiment_exposure",
        "pipeline_heartbeat",
    ]
    events = [stamped(kind, T0 + timedelta(seconds=i)) for i, kind in enumerate(kinds)]
    rows = enriched(harness.run(*events))
    assert [str(row.event_type) for row in rows] == kinds
    by_type = {str(row.event_type): row for row in rows}
    assert by_type["tool_selected"].tool_id == 3
    assert (by_type["tool_selected"].tool_name, by_type["tool_selected"].tool_type) == ("segmentation", "ai_assist")
    assert by_type["inference_completed"].inference_name == "remove_object"
    assert by_type["inference_completed"].inference_type == "inpainting"
    assert by_type["inference_completed"].model_name == "opencv-telea"
    assert by_type["score_submitted"].score == 4
    assert by_type["image_uploaded"].width == 800
    assert by_type["experiment_exposure"].variant == "treatment"
    assert [row.funnel_step for row in rows] == [1, 2, 2, 3, 3, 4, 5, 0, 0]
    assert all(row.browser == "Chrome" and row.os == "Windows" and not row.is_bot for row in rows)
    assert all(row.event_ts == T0 + timedelta(seconds=i) for i, row in enumerate(rows))
    assert len({row.session_id for row in rows}) == 1


def test_unknown_dimension_keeps_the_event_flags_and_counts_it() -> None:
    harness = Harness()
    rows = enriched(harness.run(stamped("tool_selected", T0, tool_id=77)))
    assert len(rows) == 1
    assert rows[0].unknown_dimension and rows[0].tool_id == 77 and rows[0].tool_name is None
    assert harness.enricher.counters.unknown_tool == 1


def test_a_renamed_tool_applies_to_later_events_only() -> None:
    harness = Harness()
    before = enriched(harness.run(stamped("tool_selected", T0, tool_id=1)))[0]
    harness.dimensions.apply_tool(
        b"1", orjson.dumps({"tool_id": 1, "tool_name": "box", "tool_type": "manual", "updated_at": T0.isoformat()})
    )
    after = enriched(harness.run(stamped("tool_selected", T0 + timedelta(seconds=1), tool_id=1)))[0]
    assert (before.tool_name, after.tool_name) == ("rectangle", "box")


def test_bots_are_flagged_from_the_user_agent() -> None:
    harness = Harness()
    event = stamped("image_uploaded", T0)
    event["context"] = {"user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
    row = enriched(harness.run(event))[0]
    assert row.is_bot and row.device == "Spider"


def test_duplicates_are_dropped_within_a_batch_and_across_batches() -> None:
    harness = Harness()
    event = stamped("image_uploaded", T0)
    resend = dict(event, received_at=(T0 + timedelta(minutes=3)).isoformat())
    first = harness.run(event, resend)
    second = harness.run(resend)
    assert len(first.enriched) == 1 and second.enriched == [] and second.sessions == []
    assert harness.processor.counters.duplicates == 2


def test_dedup_state_expires_after_the_window() -> None:
    harness = Harness(SessionRules(dedup_window_ms=3_600_000))
    event = stamped("image_uploaded", T0)
    harness.run(event)
    harness.run(stamped("image_saved", T0 + timedelta(hours=2), anonymous_id="other"))
    harness.processor.commit(harness.processor.close_idle())
    assert harness.processor.counters.dedup_records_expired == 1
    assert not any(key.startswith("b:0:0") for key in harness.store.data)
    assert len(harness.run(event).enriched) == 1


def test_poison_messages_go_to_the_dlq_and_the_batch_goes_on() -> None:
    harness = Harness()
    unstamped = example("image_uploaded")
    bad_score = stamped("score_submitted", T0, score=9)
    good = stamped("image_uploaded", T0)
    out = harness.run(b"{not json", unstamped, bad_score, good)
    assert len(out.enriched) == 1
    letters = [decode(value) for _, value in out.dead_letters]
    assert original_payload(letters[0]) == b"{not json", "a dead letter replays the original bytes"
    assert [(letter.stage, letter.partition, letter.offset) for letter in letters] == [
        ("stream", 0, 0),
        ("stream", 0, 1),
        ("stream", 0, 2),
    ]
    assert "invalid JSON" in letters[0].reason
    assert {error.field for error in letters[1].errors} == {"event_ts", "received_at"}
    assert letters[1].event_id == unstamped["event_id"]
    assert letters[2].errors[0].field == "score"
    assert letters[2].payload == orjson.dumps(bad_score).decode()


def test_inactivity_splits_sessions_and_ids_are_deterministic() -> None:
    harness = Harness()
    out = harness.run(
        stamped("image_uploaded", T0),
        stamped("tool_selected", T0 + timedelta(minutes=29)),
        stamped("image_saved", T0 + timedelta(minutes=29 + 31)),
    )
    rows = enriched(out)
    assert rows[0].session_id == rows[1].session_id == session_id_for("device-1", int(T0.timestamp() * 1000))
    assert rows[2].session_id != rows[0].session_id
    sessions = summaries(out)
    first = sessions[rows[0].session_id]
    assert (first.event_count, first.duration_s, first.deepest_step, first.deepest_step_name) == (2, 29 * 60, 2, "tool")
    assert first.experiments == {"segmentation-tool": "treatment"}
    assert len(first.input_ids) == 2


def test_maximum_duration_starts_a_new_session() -> None:
    harness = Harness(SessionRules(gap_ms=30 * 60_000, max_ms=60 * 60_000))
    times = [T0 + timedelta(minutes=m) for m in (0, 20, 40, 60, 80)]
    rows = enriched(harness.run(*[stamped("tool_selected", t) for t in times]))
    ids = [row.session_id for row in rows]
    assert ids[0] == ids[1] == ids[2] == ids[3] and ids[4] != ids[0]


def test_out_of_order_event_within_lateness_joins_the_session() -> None:
    harness = Harness()
    out = harness.run(
        stamped("image_uploaded", T0 + timedelta(minutes=10)),
        stamped("image_saved", T0 + timedelta(minutes=12)),
        stamped("tool_selected", T0 + timedelta(minutes=8)),
    )
    rows = enriched(out)
    assert len({row.session_id for row in rows}) == 1 and not any(row.is_late for row in rows)
    (summary,) = summaries(out).values()
    assert summary.started_at == T0 + timedelta(minutes=8)
    assert summary.event_count == 3 and summary.version == 3


def test_a_bridging_event_merges_two_sessions_and_retires_the_later_one() -> None:
    harness = Harness(SessionRules(lateness_ms=60 * 60_000))
    out = harness.run(
        stamped("image_uploaded", T0),
        stamped("image_saved", T0 + timedelta(minutes=50)),
        stamped("tool_selected", T0 + timedelta(minutes=25)),
    )
    rows = enriched(out)
    assert rows[0].session_id != rows[1].session_id
    assert rows[2].session_id == rows[0].session_id
    sessions = summaries(out)
    kept, retired = sessions[rows[0].session_id], sessions[rows[1].session_id]
    assert kept.event_count == 3 and kept.duration_s == 50 * 60 and not kept.closed
    assert retired.event_count == 0 and retired.closed
    last_on_topic = {key: SessionSummary.model_validate_json(value) for key, value in out.sessions}
    assert last_on_topic[rows[1].session_id.encode()] == retired, "compaction keeps the retirement"
    assert harness.processor.counters.merges == 1


def test_events_older_than_the_lateness_are_kept_flagged_and_never_merge() -> None:
    harness = Harness()
    out = harness.run(
        stamped("image_uploaded", T0, anonymous_id="a"),
        stamped("image_uploaded", T0 + timedelta(minutes=20), anonymous_id="b"),
        stamped("tool_selected", T0 + timedelta(minutes=10), anonymous_id="a"),
        stamped("tool_selected", T0 - timedelta(hours=2), anonymous_id="a"),
    )
    rows = enriched(out)
    assert [row.is_late for row in rows] == [False, False, True, True]
    assert rows[2].session_id == rows[0].session_id
    assert rows[3].session_id not in {rows[0].session_id, rows[1].session_id}
    session_a = summaries(out)[rows[0].session_id]
    assert session_a.event_count == 1 and session_a.late_event_count == 1
    assert session_a.last_event_at == T0
    assert harness.processor.counters.late == 2


def test_the_timer_closes_sessions_no_event_can_join_any_more() -> None:
    harness = Harness()
    harness.run(stamped("image_uploaded", T0, anonymous_id="quiet"))
    harness.run(stamped("image_uploaded", T0 + timedelta(minutes=34), anonymous_id="busy"))
    assert harness.processor.close_idle().sessions == []
    harness.run(stamped("image_saved", T0 + timedelta(minutes=36), anonymous_id="busy"))
    out = harness.processor.close_idle()
    harness.processor.commit(out)
    (closed,) = summaries(out).values()
    assert closed.anonymous_id == "quiet" and closed.closed and closed.version == 2
    assert "a:quiet" not in harness.store.data and "a:busy" in harness.store.data
    assert harness.processor.open_sessions() == 1


def test_state_changes_wait_for_commit() -> None:
    harness = Harness()
    out = harness.processor.process([harness.record(stamped("image_uploaded", T0))])
    assert harness.store.changelog == []
    harness.processor.commit(out)
    assert [key[:2] for _, key, _ in harness.store.changelog] == ["a:", "b:", "o:"]


def test_an_id_counts_as_seen_only_once_its_batch_is_committed() -> None:
    # A batch whose output was never acknowledged is not committed; the records come again
    # (to this worker or the next owner of the partition) and must not be taken for duplicates.
    harness = Harness()
    events = [stamped("image_uploaded", T0), stamped("tool_selected", T0 + timedelta(minutes=1))]
    records = [harness.record(event) for event in events]
    failed = harness.processor.process(records)
    assert len(failed.enriched) == 2
    retry = harness.processor.process(records)
    assert [row.event_id for row in enriched(retry)] == [row.event_id for row in enriched(failed)]
    assert harness.processor.counters.duplicates == 0
    # Nor did the failed batch change the sessions it touched: they count each event once.
    (session,) = summaries(retry).values()
    assert (session.event_count, session.version) == (2, 2)
    harness.processor.commit(retry)
    assert harness.processor.process(records).enriched == []


def test_records_after_a_gap_wait_for_the_skipped_ones_and_each_is_processed_once() -> None:
    harness = Harness()
    events = [stamped("image_uploaded", T0 + timedelta(minutes=i), anonymous_id=f"d{i % 2}") for i in range(8)]
    records = [harness.record(event) for event in events]
    first = harness.run_records(records[:3])
    assert first.progress == {} and harness.processor.next_offsets == {0: 3}
    # The consumer lost offsets 3..4 (a fetch from before a seek moved its read offset on).
    skipped = harness.processor.process(records[5:7])
    assert skipped.enriched == [] and skipped.gaps == {0: (3, 5)}
    harness.processor.commit(skipped)
    assert harness.processor.next_offsets == {0: 3}
    assert harness.store.data["o:0"] == 3
    # After the seek back the partition is read again from offset 3, with redeliveries mixed in.
    resumed = harness.run_records(records[1:])
    assert resumed.gaps == {} and harness.processor.next_offsets == {0: 8}
    rows = enriched(first) + enriched(resumed)
    assert sorted(str(row.event_id) for row in rows) == sorted(event["event_id"] for event in events)
    assert harness.processor.counters.redelivered == 2 and harness.processor.counters.gaps == 1


def test_a_new_owner_continues_from_the_progress_in_the_store() -> None:
    harness = Harness()
    events = [stamped("image_uploaded", T0 + timedelta(minutes=i)) for i in range(4)]
    records = [harness.record(event, partition=1) for event in events]
    harness.run_records(records[:2])
    owner = StreamProcessor(harness.store, harness.enricher, clock=lambda: T0)
    # Its consumer starts past the progress: the group offset got ahead of what was processed.
    out = owner.process(records[3:])
    assert out.enriched == [] and out.gaps == {1: (2, 3)}
    out = owner.process(records[2:])
    assert [str(row.event_id) for row in enriched(out)] == [event["event_id"] for event in events[2:]]


def test_a_restarted_processor_gives_the_same_answer_as_one_that_never_stopped() -> None:
    events = [
        stamped(kind, T0 + timedelta(minutes=i * 7), anonymous_id=f"d{i % 3}")
        for i, kind in enumerate(["image_uploaded", "tool_selected", "image_saved"] * 6)
    ]
    steady = Harness()
    steady_rows = enriched(steady.run(*events))

    crashed = Harness()
    first = crashed.processor.process([crashed.record(event) for event in events[:10]])
    crashed.processor.commit(first)
    # The next batch's output went out and its device records reached the changelog, but the
    # worker died before its batch record: offsets 10.. are consumed again after the restart.
    second = crashed.processor.process([crashed.record(event) for event in events[10:14]])
    device_writes = [write for write in second.state_writes if write[1].startswith("a:")]
    restarted = StreamProcessor(crashed.store, crashed.enricher, clock=lambda: T0)
    for partition, key, value in device_writes:
        crashed.store.put(partition, key, orjson.loads(orjson.dumps(value)))
    crashed.offsets[0] = 10
    restarted_rows = enriched(first) + enriched(second)
    replay = restarted.process([crashed.record(event) for event in events[10:]])
    restarted.commit(replay)
    restarted_rows += enriched(replay)

    def by_id(rows: list[EnrichedEvent]) -> dict[uuid.UUID, tuple[str, bool]]:
        return {row.event_id: (row.session_id, row.is_late) for row in rows}

    assert by_id(restarted_rows) == by_id(steady_rows)
    assert restarted.counters.replayed == 4
    final = {key: value for key, value in crashed.store.data.items() if key.startswith("a:")}
    expected = {key: value for key, value in steady.store.data.items() if key.startswith("a:")}
    assert orjson.loads(orjson.dumps(final)) == orjson.loads(orjson.dumps(expected))


def test_a_partition_is_indexed_from_the_store_on_assignment() -> None:
    harness = Harness()
    event = stamped("image_uploaded", T0)
    harness.run(event, partition=2)
    other = StreamProcessor(harness.store, harness.enricher, clock=lambda: T0)
    harness.offsets[2] = 0
    assert other.process([harness.record(event, partition=2)]).enriched == []
    other.drop_partition(2)
    assert harness.store.data == {}


def test_event_ids_pack_into_one_string_and_back() -> None:
    ids = [uuid.uuid4().int for _ in range(5)] + [0, 2**128 - 1]
    packed = pack_ids(ids)
    assert isinstance(orjson.loads(orjson.dumps(packed)), str)
    assert unpack_ids(packed) == ids
    assert unpack_ids(pack_ids([])) == []
    assert unpack_ids([str(uuid.UUID(int=ids[0]))]) == ids[:1]


def test_state_in_the_earlier_changelog_form_is_read_back() -> None:
    # Before the compact form a device record nested its sessions in a list and a batch record
    # listed its event ids as strings; a changelog written then must restore the same answer.
    harness = Harness()
    first = stamped("image_uploaded", T0)
    session_id = enriched(harness.run(first))[0].session_id
    for key, value in list(harness.store.data.items()):
        if key.startswith("a:"):
            harness.store.data[key] = orjson.loads(orjson.dumps([value[0], value[1], value[2:]]))
        elif key.startswith("b:"):
            legacy = [str(uuid.UUID(int=event_id)) for event_id in unpack_ids(value[2])]
            harness.store.data[key] = [value[0], value[1], legacy]
    harness.processor = StreamProcessor(harness.store, harness.enricher, clock=lambda: T0)
    out = harness.run(first, stamped("tool_selected", T0 + timedelta(minutes=1)))
    assert harness.processor.counters.duplicates == 1
    assert [row.session_id for row in enriched(out)] == [session_id]
    assert summaries(out)[session_id].event_count == 2
    assert harness.processor.open_sessions() == 1


@pytest.mark.parametrize("gap_s", [0.0])
def test_settings_refuse_a_maximum_below_the_gap(gap_s: float) -> None:
    from stream_processors.settings import StreamConfig

    with pytest.raises(ValueError, match="session_max_s"):
        StreamConfig(session_gap_s=3600, session_max_s=60 + gap_s)
