"""The processing core in memory: dedup, enrichment, sessions, dead letters, replay; records
as the collector writes them (blocks of events under the block header) and as every other
producer does (one event, no header)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import orjson
import pytest

from funnelstream.blocks import BLOCK_VERSION, join_documents, split_block
from funnelstream.contract import EnrichedEvent, SessionSummary, parse_event
from funnelstream.deadletter import decode, original_payload
from ingest.pipeline import event_bytes
from ops.journeys import raw_blocks, raw_stream
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

    def block(
        self, events: Sequence[dict[str, Any] | bytes], partition: int = 0, version: bytes = BLOCK_VERSION
    ) -> RawRecord:
        """One record of the collector: the events in its bytes, joined, under the block header."""
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        documents = [event if isinstance(event, bytes) else collector_document(event) for event in events]
        return RawRecord(partition, offset, b"k", join_documents(documents), "events.raw", version)

    def run_records(self, records: list[RawRecord]) -> Output:
        out = self.processor.process(records)
        self.processor.commit(out)
        return out

    def run(self, *events: dict[str, Any] | bytes, partition: int = 0) -> Output:
        out = self.processor.process([self.record(event, partition) for event in events])
        self.processor.commit(out)
        return out


def collector_document(event: dict[str, Any]) -> bytes:
    """An event in the exact bytes the collector writes for it."""
    return event_bytes(parse_event(event).__dict__)


def enriched(out: Output) -> list[EnrichedEvent]:
    """Every row of the output, each output message being the block of rows of one record."""
    return [EnrichedEvent.model_validate_json(row) for _, value in out.enriched for row in split_block(value)]


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


# --- blocks ----------------------------------------------------------------------------------------


def as_plain_records(records: list[RawRecord]) -> list[RawRecord]:
    """The same events as an older collector wrote them: one record per event, no header."""
    plain: list[RawRecord] = []
    offsets: dict[int, int] = {}
    for record in records:
        assert record.value is not None
        for document in split_block(record.value):
            offset = offsets.get(record.partition, 0)
            offsets[record.partition] = offset + 1
            plain.append(RawRecord(record.partition, offset, record.key, document, record.topic))
    return plain


def block_records(partitions: int = 4) -> list[RawRecord]:
    offsets: dict[int, int] = {}
    records = []
    for block in raw_blocks(raw_stream(3_000, 300, seed=3), partitions):
        offset = offsets.get(block.partition, 0)
        offsets[block.partition] = offset + 1
        records.append(RawRecord(block.partition, offset, block.key, block.value, "events.raw", BLOCK_VERSION))
    return records


def run_in_batches(harness: Harness, records: list[RawRecord], size: int) -> tuple[list[EnrichedEvent], Output]:
    rows: list[EnrichedEvent] = []
    sessions = Output()
    for start in range(0, len(records), size):
        out = harness.run_records(records[start : start + size])
        rows += enriched(out)
        sessions.sessions += out.sessions
    return rows, sessions


def test_blocks_give_the_answer_of_the_same_events_one_record_each() -> None:
    records = block_records()
    assert max(split_block(r.value or b"").__len__() for r in records) > 100, "SDK-sized blocks are in the workload"
    blocks, plain = Harness(), Harness()
    block_rows, block_out = run_in_batches(blocks, records, 40)
    plain_rows, plain_out = run_in_batches(plain, as_plain_records(records), 500)
    assert [(r.event_id, r.session_id, r.is_late) for r in block_rows] == [
        (r.event_id, r.session_id, r.is_late) for r in plain_rows
    ]
    assert len({row.event_id for row in block_rows}) == len(block_rows), "resends in other blocks are dropped"
    assert blocks.processor.counters.duplicates == plain.processor.counters.duplicates > 0
    assert summaries(block_out) == summaries(plain_out)
    assert blocks.processor.counters.dead_letters == 0


def test_a_batch_mixes_plain_records_and_blocks() -> None:
    harness = Harness()
    first, second, third, fourth = (
        stamped(kind, T0 + timedelta(minutes=i))
        for i, kind in enumerate(["image_uploaded", "tool_selected", "image_saved", "score_submitted"])
    )
    records = [
        harness.record(first),
        harness.block([second, third, dict(first)]),
        harness.record(fourth),
    ]
    out = harness.run_records(records)
    assert [str(row.event_id) for row in enriched(out)] == [e["event_id"] for e in (first, second, third, fourth)]
    assert [len(split_block(value)) for _, value in out.enriched] == [1, 2, 1], "a block of rows per record"
    (session,) = summaries(out).values()
    assert (session.event_count, session.deepest_step) == (4, 5)
    assert harness.processor.counters.duplicates == 1


def test_events_of_one_device_in_one_block_all_apply_and_a_replay_applies_none_again() -> None:
    # Several events of a device share their record's offset: only the device's applied offset
    # from before the batch tells a replay (after a crash) from the block's own earlier events.
    events = [stamped("tool_selected", T0 + timedelta(minutes=i), anonymous_id=f"d{i % 2}") for i in range(12)]
    steady = Harness()
    records = [steady.block(events[start : start + 4]) for start in range(0, 12, 4)]
    steady_out = steady.run_records(records)
    steady_rows = enriched(steady_out)
    assert sorted(s.event_count for s in summaries(steady_out).values()) == [6, 6]

    crashed = Harness()
    first = crashed.run_records(records[:1])
    second = crashed.processor.process(records[1:])
    # Its device records reached the changelog, its batch record and progress did not.
    for partition, key, value in second.state_writes:
        if key.startswith("a:"):
            crashed.store.put(partition, key, orjson.loads(orjson.dumps(value)))
    restarted = StreamProcessor(crashed.store, crashed.enricher, clock=lambda: T0)
    replay = restarted.process(records[1:])
    restarted.commit(replay)
    assert restarted.counters.replayed == 8
    rows = enriched(first) + enriched(replay)
    assert [(r.event_id, r.session_id) for r in rows] == [(r.event_id, r.session_id) for r in steady_rows]
    final = {k: v for k, v in crashed.store.data.items() if k.startswith("a:")}
    expected = {k: v for k, v in steady.store.data.items() if k.startswith("a:")}
    assert orjson.loads(orjson.dumps(final)) == orjson.loads(orjson.dumps(expected))


def forged_documents(good: dict[str, Any]) -> dict[str, bytes]:
    """Documents in a collector's block that the collector never wrote, each wrong in one way."""
    document = orjson.loads(collector_document(good))

    def variant(**changes: Any) -> bytes:
        return orjson.dumps({**document, "event_id": str(uuid.uuid4()), **changes})

    unstamped = {k: v for k, v in document.items() if k not in ("event_ts", "received_at")}
    return {
        "not json": b'{"event_id": "x", ',
        "not an object": b'["image_uploaded"]',
        "unstamped": orjson.dumps({**unstamped, "event_id": str(uuid.uuid4())}),
        "event_id": variant(event_id=12),
        "anonymous_id": variant(anonymous_id=["a"]),
        "schema_version": variant(schema_version=99),
        "event_type": variant(event_type="teleported"),
        "event_ts": variant(event_ts="yesterday"),
        "experiments": variant(experiments={"segmentation-tool": ["a"]}),
        "tool": variant(event_type="tool_selected", tool_id=[3]),
        "context": variant(context="Mozilla"),
        "empty": b"",
    }


def test_each_forged_document_in_a_block_dead_letters_alone_with_its_reason() -> None:
    harness = Harness()
    before = stamped("image_uploaded", T0)
    after = stamped("image_saved", T0 + timedelta(minutes=1))
    forged = forged_documents(stamped("image_uploaded", T0 + timedelta(seconds=30)))
    record = harness.block([before, *forged.values(), after])
    out = harness.run_records([record])
    assert [str(row.event_id) for row in enriched(out)] == [before["event_id"], after["event_id"]]
    letters = [decode(value) for _, value in out.dead_letters]
    assert [original_payload(letter) for letter in letters] == list(forged.values()), "each letter holds its document"
    assert all((x.stage, x.topic, x.partition, x.offset) == ("stream", "events.raw", 0, 0) for x in letters)
    reasons = dict(zip(forged, letters, strict=True))
    assert "invalid JSON" in reasons["not json"].reason
    assert {e.field for e in reasons["unstamped"].errors} == {"event_ts", "received_at"}
    for name in ("event_id", "anonymous_id", "schema_version", "event_type", "event_ts", "experiments"):
        assert name in {e.field for e in reasons[name].errors}, name
    assert "TypeError" in reasons["tool"].reason and "AttributeError" in reasons["context"].reason
    readable = orjson.loads(forged["unstamped"])["event_id"]
    assert reasons["unstamped"].event_id == readable and reasons["not json"].event_id is None
    # The neighbours' session saw exactly them.
    (session,) = summaries(out).values()
    assert (session.event_count, session.deepest_step, session.version) == (2, 4, 2)
    assert harness.processor.counters.dead_letters == len(forged)


def test_a_block_of_an_unknown_version_is_validated_in_full() -> None:
    harness = Harness()
    good = stamped("image_uploaded", T0)
    out_of_range = stamped("score_submitted", T0 + timedelta(minutes=1), score=9)
    document = orjson.dumps(out_of_range)
    out = harness.run_records([harness.block([good, document], version=b"2")])
    assert [str(row.event_id) for row in enriched(out)] == [good["event_id"]]
    (letter,) = [decode(value) for _, value in out.dead_letters]
    assert letter.errors[0].field == "score" and original_payload(letter) == document
    # The collector's version is trusted for everything but its stamps and version.
    trusted = Harness()
    assert len(enriched(trusted.run_records([trusted.block([document])]))) == 1
