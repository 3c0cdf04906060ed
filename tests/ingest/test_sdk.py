"""The SDK against a scripted collector: retries keep event ids, honour Retry-After, stop on 4xx."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import httpx
import orjson
import pytest

from ingest.sdk import Backoff, Client, SendError, split_batches


def scripted(statuses: list[int], seen: list[dict]) -> httpx.MockTransport:  # type: ignore[type-arg]
    def handle(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(gzip.decompress(request.content))
        seen.append({"body": body, "headers": dict(request.headers)})
        status = statuses.pop(0) if statuses else 202
        if status == 202:
            return httpx.Response(202, json={"accepted": len(body["batch"]), "rejected": []})
        return httpx.Response(status, json={"error": "x", "detail": "y"}, headers={"Retry-After": "3"})

    return httpx.MockTransport(handle)


def client(transport: httpx.MockTransport, sleeps: list[float], **kwargs: object) -> Client:
    return Client(
        "http://collector",
        write_key="k",
        transport=transport,
        sleep=sleeps.append,
        backoff=Backoff(base_s=0.5, max_s=8, rand=lambda: 1.0),
        **kwargs,  # type: ignore[arg-type]
    )


def test_retries_carry_the_same_event_ids_and_a_fresh_sent_at() -> None:
    seen: list[dict] = []  # type: ignore[type-arg]
    sleeps: list[float] = []
    sdk = client(scripted([503, 429, 202], seen), sleeps)
    events = [{"event_type": "image_saved", "event_id": f"id-{i}", "anonymous_id": "a"} for i in range(3)]
    result = sdk.send_batch(events)
    assert result.accepted == 3 and result.attempts == 3
    ids = [[e["event_id"] for e in s["body"]["batch"]] for s in seen]
    assert ids == [["id-0", "id-1", "id-2"]] * 3
    assert seen[0]["headers"]["x-write-key"] == "k" and seen[0]["headers"]["content-encoding"] == "gzip"
    assert seen[0]["body"]["sent_at"] <= seen[2]["body"]["sent_at"]
    # Retry-After (3 s) wins over shorter backoff; the backoff grows otherwise.
    assert sleeps == [3.0, 3.0]


def test_backoff_is_jittered_and_capped() -> None:
    draws = iter([0.0, 0.5, 1.0])
    backoff = Backoff(base_s=1, max_s=4, rand=lambda: next(draws))
    assert backoff.delay(0, None) == 0.0
    assert backoff.delay(1, None) == 1.0
    assert backoff.delay(10, None) == 4.0


def test_refusals_are_not_retried() -> None:
    seen: list[dict] = []  # type: ignore[type-arg]
    sdk = client(scripted([401], seen), [])
    with pytest.raises(SendError) as refused:
        sdk.send_batch([{"event_id": "e1"}])
    assert refused.value.status == 401 and refused.value.attempts == 1
    assert len(seen) == 1


def test_gives_up_after_max_retries_and_says_which_events() -> None:
    seen: list[dict] = []  # type: ignore[type-arg]
    sleeps: list[float] = []
    sdk = client(scripted([503] * 10, seen), sleeps, max_retries=2)
    with pytest.raises(SendError) as failed:
        sdk.send_batch([{"event_id": "e1"}, {"event_id": "e2"}])
    assert failed.value.attempts == 3 and failed.value.event_ids == ["e1", "e2"]
    assert len(seen) == 3 and len(sleeps) == 2


def test_network_errors_are_retried() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(202, json={"accepted": 1, "rejected": []})

    sdk = client(httpx.MockTransport(flaky), [])
    assert sdk.send_batch([{"event_id": "e"}]).attempts == 2


def test_track_batches_in_the_background_and_flush_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict] = []  # type: ignore[type-arg]
    sdk: Callable[..., Client] = client
    with sdk(scripted([], seen), [], batch_size=4, flush_interval_s=0.05) as c:
        ids = [c.track({"event_type": "image_saved", "anonymous_id": "a"}) for _ in range(10)]
        c.flush()
    sent = [e for s in seen for e in s["body"]["batch"]]
    assert [e["event_id"] for e in sent] == ids
    assert all(len(s["body"]["batch"]) <= 4 for s in seen)
    assert all(e["context"]["library_name"] == "funnelstream-python" and "client_ts" in e for e in sent)


def test_split_batches_respects_count_and_bytes() -> None:
    small = [{"i": i} for i in range(1200)]
    assert [len(b) for b in split_batches(small)] == [500, 500, 200]
    big = [{"blob": "x" * 300_000} for _ in range(4)]
    assert [len(b) for b in split_batches(big)] == [2, 2]
