"""The load generator's events and its verdict, in memory; the warehouse is faked at its SQL API."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from funnelstream.contract import parse_event
from funnelstream.errors import ContractError
from ops.load import EventFactory, SendLog, Verdict, verify


def test_the_events_are_valid_journeys_of_the_run_and_unique() -> None:
    factory = EventFactory(seed=123456789)
    events = [event for _ in range(20) for event in factory.batch(50)]
    assert len({event["event_id"] for event in events}) == len(events)
    for event in events:
        parse_event({**event, "sent_at": event["client_ts"]})
        assert event["anonymous_id"].startswith(factory.prefix)
    kinds = {event["event_type"] for event in events}
    assert {"experiment_exposure", "image_uploaded", "tool_selected", "inference_requested", "image_saved"} <= kinds


def test_every_malformed_event_is_refused_by_the_contract_naming_the_broken_field() -> None:
    factory = EventFactory(seed=987654321, malformed_share=0.2)
    events = [event for _ in range(50) for event in factory.batch(40)]
    broken = [event for event in events if event["event_id"] in factory.malformed]
    assert 250 < len(broken) < 550  # about 20% of 2,000
    assert len(set(factory.malformed.values())) >= 4  # several kinds of damage, not one
    for event in broken:
        with pytest.raises(ContractError) as refused:
            parse_event(event)
        named = {error.field.split(".")[0] for error in refused.value.errors}
        assert factory.malformed[event["event_id"]] in named or "event_type" in named
    for event in events:
        if event["event_id"] not in factory.malformed:
            parse_event(event)


def _cycle_and_device(factory: EventFactory, anonymous_id: str) -> tuple[int, str]:
    """Which pass over the pool an id is from (0: as drawn), and the drawn device it renames."""
    rest = anonymous_id.removeprefix(factory.prefix)
    if rest.startswith("c"):
        marker, _, device = rest.partition("-")
        return int(marker[1:]), device
    return 0, rest


def _journey_step(event: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value for key, value in event.items() if key not in {"event_id", "anonymous_id", "user_id", "client_ts"}
    }


def test_pooled_batches_replay_each_devices_journey_in_order_under_new_identities() -> None:
    factory = EventFactory(seed=424242, pool_events=0)  # the pool is one draw; batches cycle over it
    events = [event for _ in range(300) for event in factory.batch(97)]
    assert factory.pooled < len(events) / 2  # more than two passes over the pool
    assert len({event["event_id"] for event in events}) == len(events)
    journeys: dict[tuple[int, str], list[dict[str, Any]]] = {}
    users: dict[tuple[int, str], set[str | None]] = {}
    for event in events:
        assert str(uuid.UUID(event["event_id"])) == event["event_id"]  # canonical UUID text
        parse_event({**event, "sent_at": event["client_ts"]})
        assert event["anonymous_id"].startswith(factory.prefix)  # how verify finds the run
        assert event.get("user_id", factory.prefix).startswith(factory.prefix)
        key = _cycle_and_device(factory, event["anonymous_id"])
        journeys.setdefault(key, []).append(_journey_step(event))
        users.setdefault(key, set()).add(event.get("user_id"))
    cycles = {cycle for cycle, _ in journeys}
    assert {0, 1, 2} <= cycles
    for (cycle, device), steps in journeys.items():
        if 0 < cycle < max(cycles):  # whole passes: the same journey, step for step, as the device drawn
            assert steps == journeys[(0, device)]
            assert len(users[(cycle, device)]) == 1  # one device, one user (or none), as drawn
            renamed = {user.removeprefix(factory.prefix) for user in users[(cycle, device)] if user}
            drawn = {user.removeprefix(factory.prefix) for user in users[(0, device)] if user}
            assert renamed == {f"c{cycle}-{user}" for user in drawn}


def test_a_prefilled_pool_sends_the_events_the_seed_draws_and_draws_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn = EventFactory(seed=77)
    prefilled = EventFactory(seed=77)
    prefilled.prefill(5_000)
    assert prefilled.pooled >= 5_000

    def no_drawing(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("drew journeys after prefill")

    expected = [_journey_step(event) | {"event_id": event["event_id"]} for event in drawn.batch(4_000)]
    monkeypatch.setattr("ops.load.journeys", no_drawing)
    sent = [_journey_step(event) | {"event_id": event["event_id"]} for event in prefilled.batch(4_000)]
    assert sent == expected


def test_malformed_events_of_recycled_journeys_are_recorded_by_their_new_ids() -> None:
    factory = EventFactory(seed=5150, malformed_share=0.1, pool_events=0)
    events = [event for _ in range(250) for event in factory.batch(100)]
    recycled = [event for event in events if event["event_id"][14] == "4"]  # version 4: renamed, not drawn
    assert len(recycled) > 5_000
    broken = [event for event in recycled if event["event_id"] in factory.malformed]
    assert 0.07 * len(recycled) < len(broken) < 0.13 * len(recycled)
    assert len(factory.malformed) == sum(event["event_id"] in factory.malformed for event in events)
    for event in broken:
        with pytest.raises(ContractError):
            parse_event(event)


class FakeWarehouse:
    """Answers the three questions ``verify`` asks, from rows given by the test."""

    def __init__(self, events: list[tuple[str, int, int, int]], dlq: dict[str, str]) -> None:
        # (event_id, copies after FINAL, copies before, inserted_ms); each enriched 100 ms before its insert
        self.events = events
        self.dlq = dlq

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        parameters = parameters or {}
        if "uniqExact" in sql:
            return [{"n": len(self.events)}]
        if "dlq_events" in sql:
            return [
                {"event_id": i, "reason": self.dlq[i], "stage": "ingest"} for i in parameters["ids"] if i in self.dlq
            ]
        assert re.search(r"cityHash64\(event_id\) % \{pages:UInt32\}", sql)
        return [
            {
                "event_id": event_id,
                "final_copies": final,
                "raw_copies": final + raw,
                "inserted_ms": inserted,
                "enriched_ms": inserted - 100,
            }
            for event_id, final, raw, inserted in self.events
        ]


def _log(accepted: dict[str, float]) -> SendLog:
    return SendLog(accepted_at_ms=accepted)


def test_the_verdict_names_lost_duplicated_and_unexpected_events() -> None:
    factory = EventFactory(seed=1)
    factory.malformed = {"m1": "input_id", "m2": "client_ts"}
    warehouse = FakeWarehouse(
        events=[("a", 1, 1, 1_500), ("b", 2, 2, 1_100), ("stranger", 1, 1, 1_000)],
        dlq={"m1": "input_id: field required", "m2": "   "},
    )
    verdict = verify(warehouse, factory, _log({"a": 1_000.0, "b": 1_000.0, "lost": 1_000.0}), timeout_s=0)  # type: ignore[arg-type]
    assert verdict.lost == ["lost"]
    assert verdict.duplicated == ["b"]
    assert verdict.unexpected == ["stranger"]
    assert verdict.malformed_in_dlq == 2
    assert verdict.malformed_without_reason == ["m2"]
    assert verdict.freshness_ms["max"] == 500.0
    assert not verdict.ok


def test_a_complete_run_is_ok_and_its_freshness_is_measured_from_the_202() -> None:
    factory = EventFactory(seed=2)
    factory.malformed = {"m1": "width"}
    accepted = {f"e{i}": 10_000.0 for i in range(100)}
    warehouse = FakeWarehouse(
        events=[(f"e{i}", 1, 1 if i % 10 else 2, 10_000 + 10 * i) for i in range(100)],
        dlq={"m1": "width: input should be a valid integer"},
    )
    verdict: Verdict = verify(warehouse, factory, _log(accepted), timeout_s=0)  # type: ignore[arg-type]
    assert verdict.ok
    assert verdict.rows_final == 100
    assert verdict.rows_raw == 110  # replayed copies the merge has not collapsed yet, reported, not counted
    assert verdict.freshness_ms == {
        "p50": 490.0,
        "p95": 940.0,
        "p99": 980.0,
        "max": 990.0,
        "stream_stage_p99": 880.0,
        "loader_stage_p99": 100.0,
    }


class LateDeadLetters(FakeWarehouse):
    """Every event visible at once; the dead letters land in the warehouse a few polls later."""

    def __init__(self, *args: Any, polls_before_dlq: int) -> None:
        super().__init__(*args)
        self.dlq_polls = 0
        self.polls_before_dlq = polls_before_dlq

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if "dlq_events" in sql:
            self.dlq_polls += 1
            if self.dlq_polls <= self.polls_before_dlq:
                return []
        return super().query_rows(sql, parameters)


def test_the_verdict_waits_for_dead_letters_still_on_their_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a fault the loader may still be reading events.dlq when every event is visible: a
    dead letter that arrives later is not missing."""
    monkeypatch.setattr("ops.load.time.sleep", lambda _s: None)
    factory = EventFactory(seed=3)
    factory.malformed = {"m1": "width"}
    warehouse = LateDeadLetters(
        [("e1", 1, 1, 10_000)], {"m1": "width: input should be a valid integer"}, polls_before_dlq=3
    )
    verdict = verify(warehouse, factory, _log({"e1": 9_000.0}), timeout_s=60)  # type: ignore[arg-type]
    assert verdict.ok
    assert verdict.malformed_in_dlq == 1
    assert warehouse.dlq_polls == 4
