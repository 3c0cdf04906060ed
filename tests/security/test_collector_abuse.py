"""Hostile clients of the collector's event path and front door.

Each test sends the attack to a real collector on the real local Kafka and reads back what was
stored: events are checked on the topic, dead letters on the dead-letter topic. The connection
limits are tested on a real server process with raw sockets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from funnelstream.contract import MAX_DEAD_LETTER_BYTES, MAX_JSON_DEPTH, DeadLetter, parse_event_json
from funnelstream.errors import ConfigurationError
from funnelstream.settings import KafkaConfig
from ingest.app import create_app
from ingest.settings import IngestSettings, hash_write_key
from tests.helpers import raw_http
from tests.helpers.examples import example
from tests.helpers.kafka_topics import read_events, read_topic

WRITE_KEY = "abuse-test-write-key"
READ_KEY = "abuse-test-read-key"
KEY = {"X-Write-Key": WRITE_KEY}
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
MAX_HEADER_BYTES = 16_384
MAX_HEADER_COUNT = 64


def _settings(kafka: KafkaConfig, topics: dict[str, str], source: dict[str, Any] | None = None, **ingest: Any) -> Any:
    config: dict[str, Any] = {
        **topics,
        "sources": {"web": {"write_key_sha256": [hash_write_key(WRITE_KEY)], **(source or {})}},
        "results_consumer": False,
        "experiments_enabled": False,
        **ingest,
    }
    return IngestSettings(_env_file=None, kafka=kafka, ingest=config)  # type: ignore[call-arg]


@pytest.fixture
def topics(kafka_topic: Callable[..., str]) -> dict[str, str]:
    return {"events_topic": kafka_topic("abuse.raw"), "dlq_topic": kafka_topic("abuse.dlq")}


@pytest.fixture
def collector(kafka: KafkaConfig, topics: dict[str, str]) -> Iterator[TestClient]:
    """The collector app with its real Kafka producer."""
    with TestClient(create_app(_settings(kafka, topics))) as client:
        yield client


def _json(value: Any) -> bytes:
    # The standard library's writer goes deeper than orjson's limit of 254 levels.
    return json.dumps(value, separators=(",", ":")).encode()


def _post_batch(client: TestClient, events: list[Any], headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", **KEY, **(headers or {})}
    return client.post("/v1/batch", content=_json({"batch": events}), headers=headers)


def _with_nested_properties(event: dict[str, Any], levels: int) -> bytes:
    """The event's JSON with ``properties`` nested ``levels`` deep, written as text: no JSON
    writer goes past about a thousand levels."""
    nested = b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)
    return _json({**event, "properties": "NESTED"}).replace(b'"NESTED"', nested)


def _stored_events(kafka: KafkaConfig, topic: str, expect: int) -> set[str]:
    return {str(parse_event_json(value).event_id) for _, value in read_events(kafka, topic, expect=expect)}


def _dead_letters(kafka: KafkaConfig, topic: str, expect: int) -> list[tuple[bytes | None, bytes]]:
    return read_topic(kafka, topic, expect=expect)


# --- item 7: one poison event costs its neighbours -------------------------------------------------


# 253 levels broke orjson's writer; 3,000 are past every JSON reader's limit as well.
@pytest.mark.parametrize("levels", [253, 3_000])
def test_an_event_nested_past_the_json_limits_is_refused_by_index_and_its_neighbours_stored(
    collector: TestClient, kafka: KafkaConfig, topics: dict[str, str], levels: int
) -> None:
    before, after = example("tool_selected"), example("image_saved")
    poison = example("tool_selected")
    body = b'{"batch":[' + b",".join([_json(before), _with_nested_properties(poison, levels), _json(after)]) + b"]}"
    answer = collector.post("/v1/batch", content=body, headers={"content-type": "application/json", **KEY})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] == 2
    [rejection] = body["rejected"]
    assert rejection["index"] == 1 and rejection["event_id"] == poison["event_id"]
    assert rejection["errors"] == [{"field": "properties", "reason": f"nests deeper than {MAX_JSON_DEPTH} levels"}]
    assert _stored_events(kafka, topics["events_topic"], 2) == {before["event_id"], after["event_id"]}
    [(_, value)] = _dead_letters(kafka, topics["dlq_topic"], 1)
    letter = DeadLetter.model_validate_json(value)
    assert letter.stage == "ingest" and letter.event_id == poison["event_id"]
    assert "properties: nests deeper" in letter.reason


@pytest.mark.parametrize(
    "poison",
    [
        pytest.param({"properties": {"quotes": '"' * 500_000}}, id="500k-quotes"),
        pytest.param({"properties": {str(i): 0 for i in range(90_000)}}, id="90k-property-keys"),
        pytest.param({"anonymous_id": "x" * 1_000_000}, id="1MB-anonymous-id"),
    ],
)
def test_a_dead_letter_too_large_for_kafka_is_stored_truncated_with_its_size_and_reason(
    collector: TestClient, kafka: KafkaConfig, topics: dict[str, str], poison: dict[str, Any]
) -> None:
    neighbour = example("image_saved")
    bad = example("tool_selected", **poison)
    answer = _post_batch(collector, [neighbour, bad])
    assert answer.status_code == 202, answer.text[:500]
    [rejection] = answer.json()["rejected"]
    assert rejection["index"] == 1 and rejection["errors"]
    assert _stored_events(kafka, topics["events_topic"], 1) == {neighbour["event_id"]}
    [(key, value)] = _dead_letters(kafka, topics["dlq_topic"], 1)
    assert len(value) <= MAX_DEAD_LETTER_BYTES
    letter = DeadLetter.model_validate_json(value)
    original = len(orjson.dumps(bad))
    assert letter.payload_truncated and letter.payload_bytes == original
    assert 0 < len(letter.payload) < original
    assert letter.reason and letter.event_id == bad["event_id"]
    assert key is None or len(key) <= 1024


def test_the_warehouse_loads_a_truncated_dead_letter_with_its_size_and_reason(
    collector: TestClient, kafka: KafkaConfig, topics: dict[str, str], kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    bad = example("tool_selected", anonymous_id="x" * 1_000_000)
    assert _post_batch(collector, [example("image_saved"), bad]).status_code == 202
    loader_topics = {
        "events_topic": kafka_topic("abuse.loader.events"),
        "sessions_topic": kafka_topic("abuse.loader.sessions"),
        "dlq_topic": topics["dlq_topic"],
        "tools_topic": kafka_topic("abuse.loader.tools"),
        "inferences_topic": kafka_topic("abuse.loader.inferences"),
    }
    command = [sys.executable, "-m", "tests.helpers.collector_abuse", kafka.bootstrap_servers]
    command += [str(tmp_path / "chdb"), json.dumps(loader_topics), "1"]
    loaded = subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)
    [row] = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert row["stage"] == "ingest" and row["event_id"] == bad["event_id"]
    assert row["payload_truncated"] in (True, 1) and row["payload_bytes"] == len(orjson.dumps(bad))
    assert "anonymous_id" in row["reason"] and 0 < len(row["payload"]) < row["payload_bytes"]


def test_a_poison_single_event_is_answered_4xx_and_dead_lettered(
    collector: TestClient, kafka: KafkaConfig, topics: dict[str, str]
) -> None:
    poison = example("tool_selected")
    headers = {"content-type": "application/json", **KEY}
    answer = collector.post("/v1/event", content=_with_nested_properties(poison, 3_000), headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "properties"
    [(_, value)] = _dead_letters(kafka, topics["dlq_topic"], 1)
    assert DeadLetter.model_validate_json(value).event_id == poison["event_id"]


@pytest.mark.parametrize("value", ["dev\x00ice", "dev\nice", "dev\u202eice", "dev\u2066ice", "dev\x85ice"])
@pytest.mark.parametrize("field", ["anonymous_id", "user_id"])
def test_identifiers_with_control_or_bidi_characters_are_refused_with_the_field_named(
    collector: TestClient, kafka: KafkaConfig, topics: dict[str, str], field: str, value: str
) -> None:
    neighbour = example("image_saved")
    answer = _post_batch(collector, [example("tool_selected", **{field: value}), neighbour])
    assert answer.status_code == 202
    [rejection] = answer.json()["rejected"]
    assert rejection["index"] == 0 and rejection["errors"][0]["field"] == field
    single = collector.post("/v1/event", json=example("tool_selected", **{field: value}), headers=KEY)
    assert single.status_code == 422 and single.json()["errors"][0]["field"] == field
    assert _stored_events(kafka, topics["events_topic"], 1) == {neighbour["event_id"]}


# --- item 9: rates are charged per event, per key and per client address ----------------------------


def test_the_token_bucket_charges_each_event_and_cannot_be_set_below_a_batch(
    kafka: KafkaConfig, topics: dict[str, str]
) -> None:
    # The setting: 50/s, burst 100, where a 500-event batch cost only the 100 in the bucket.
    with pytest.raises(ConfigurationError, match="burst 100, under max_batch_events"):
        _settings(kafka, topics, {"rate_per_s": 50, "burst": 100})
    settings = _settings(kafka, topics, {"rate_per_s": 50, "burst": 500})
    with TestClient(create_app(settings)) as client:
        answers = [_post_batch(client, [example("image_saved") for _ in range(500)]) for _ in range(6)]
    assert answers[0].status_code == 202
    assert [a.status_code for a in answers[1:]] == [429] * 5
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers[1:])
    assert len(read_events(kafka, topics["events_topic"])) == 500


def test_each_client_address_has_its_own_bucket(kafka: KafkaConfig, topics: dict[str, str]) -> None:
    source = {"rate_per_s": 1_000_000, "burst": 1_000_000, "address_rate_per_s": 1, "address_burst": 100}
    settings = _settings(kafka, topics, source, max_batch_events=100, trust_forwarded_for=True)
    batch = [example("image_saved") for _ in range(100)]
    with TestClient(create_app(settings)) as client:
        first = _post_batch(client, batch, {"X-Forwarded-For": "198.51.100.7"})
        again = _post_batch(client, [example("image_saved")], {"X-Forwarded-For": "198.51.100.7"})
        other = _post_batch(client, batch, {"X-Forwarded-For": "198.51.100.8"})
    assert first.status_code == 202 and other.status_code == 202
    assert again.status_code == 429 and "address" in again.json()["detail"]
    assert int(again.headers["retry-after"]) >= 1


def test_an_address_guessing_keys_is_throttled_before_its_keys_are_hashed(
    kafka: KafkaConfig, topics: dict[str, str]
) -> None:
    settings = _settings(kafka, topics, clients={"unknown_key_burst": 5, "unknown_key_rate_per_s": 0.01})
    with TestClient(create_app(settings), client=("203.0.113.9", 4000)) as guesser:
        guesses = [
            guesser.post("/v1/event", json=example("image_saved"), headers={"X-Write-Key": f"guess-{i}"}).status_code
            for i in range(8)
        ]
        # Once throttled, even the right key is not looked at from this address until it waits.
        right = guesser.post("/v1/event", json=example("image_saved"), headers=KEY)
    assert guesses == [401] * 5 + [429] * 3
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1


# --- item 10: the server's front door ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(kafka: KafkaConfig, env: dict[str, str], log_path: Path) -> Iterator[str]:
    port = _free_port()
    process_env = {
        **os.environ,
        "FS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FS_INGEST__RESULTS_CONSUMER": "false",
        "FS_INGEST__EXPERIMENTS_ENABLED": "false",
        "FS_INGEST__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "FS_INGEST__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "FS_INGEST__MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "FS_INGEST__MAX_HEADER_COUNT": str(MAX_HEADER_COUNT),
        "FS_LOG_JSON": "false",
        **env,
    }
    command = [sys.executable, "-m", "ops.cli", "ingest", "serve", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=process_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(kafka: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A collector process in dev, with short connection timeouts."""
    yield from _serve(kafka, {"FS_ENVIRONMENT": "dev"}, tmp_path_factory.mktemp("collector") / "dev.log")


@pytest.fixture(scope="module")
def prod_server(kafka: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "FS_ENVIRONMENT": "prod",
        "FS_S3__SECRET_KEY": "abuse-test-s3-secret",
        "FS_INGEST__UPLOAD_TOKEN_SECRET": "abuse-test-upload-secret",
        "FS_INGEST__SOURCES": orjson.dumps({"web": {"write_key_sha256": [hash_write_key(WRITE_KEY)]}}).decode(),
        "FS_INGEST__READ_KEY_SHA256": orjson.dumps([hash_write_key(READ_KEY)]).decode(),
        "FS_INGEST__DEMO_PAGE": "false",
    }
    yield from _serve(kafka, env, tmp_path_factory.mktemp("collector") / "prod.log")


def test_a_sender_of_one_header_byte_a_second_is_cut_within_the_header_timeout(server: str) -> None:
    head = b"POST /v1/event HTTP/1.1\r\nHost: collector\r\nX-Slow: " + b"a" * 60 + b"\r\n\r\n"
    with raw_http.connect(server) as sock:
        elapsed, sent, answer = raw_http.send_slowly(sock, head, give_up_s=HEADER_TIMEOUT_S * 10)
    assert sent < len(head), "the whole slow head was accepted"
    assert answer.startswith(b"HTTP/1.1 408")
    # Cut within the configured timeout, give or take the one-second gap between bytes.
    assert elapsed <= HEADER_TIMEOUT_S + 2


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server: str) -> None:
    with raw_http.connect(server) as sock:
        sock.settimeout(HEADER_TIMEOUT_S * 10)
        started = time.monotonic()
        answer = raw_http.read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and elapsed <= HEADER_TIMEOUT_S + 2


def test_a_body_sent_one_byte_a_second_is_cut_within_the_body_timeout(server: str) -> None:
    body = orjson.dumps(example("image_saved"))
    head = (
        f"POST /v1/event HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
        f"X-Write-Key: fs-dev-write-key\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with raw_http.connect(server) as sock:
        sock.sendall(head)
        elapsed, sent, answer = raw_http.send_slowly(sock, body, give_up_s=BODY_TIMEOUT_S * 10)
    assert sent < len(body)
    assert answer.startswith(b"HTTP/1.1 408")
    assert elapsed <= BODY_TIMEOUT_S + 2


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/event"])
def test_an_unknown_header_key_is_refused_before_the_body_is_read(server: str, path: str) -> None:
    # Only the head is sent: a server that waits for the declared body before checking the key
    # answers the body timeout's 408 instead of 401.
    head = (
        f"POST {path} HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
        f"X-Write-Key: not-a-key-of-ours\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    with raw_http.connect(server) as sock:
        sock.settimeout(BODY_TIMEOUT_S * 10)
        sock.sendall(head)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"unknown write key" in answer


@pytest.mark.parametrize("headers", raw_http.OVERSIZED_HEADS.values(), ids=raw_http.OVERSIZED_HEADS.keys())
def test_oversized_heads_are_refused_431(server: str, headers: bytes) -> None:
    answer = raw_http.send_head(server, b"GET /healthz HTTP/1.1\r\nHost: collector\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_an_origin_matching_a_forged_host_is_still_cross_origin(server: str) -> None:
    answer = httpx.post(
        f"{server}/v1/event",
        json=example("image_saved"),
        headers={"X-Write-Key": "fs-dev-write-key", "Origin": "http://evil.example", "Host": "evil.example"},
    )
    assert answer.status_code == 403 and answer.json()["error"] == "origin_not_allowed"
    # The page the collector serves itself, at the address it was reached on, stays same-origin.
    own = httpx.post(
        f"{server}/v1/event", json=example("image_saved"), headers={"X-Write-Key": "fs-dev-write-key", "Origin": server}
    )
    assert own.status_code == 202, own.text


@pytest.mark.parametrize("path", ["/metrics", "/docs", "/openapi.json"])
def test_operations_pages_need_the_read_key_in_prod_and_stay_open_in_dev(
    server: str, prod_server: str, path: str
) -> None:
    assert httpx.get(f"{server}{path}").status_code == 200
    refused = httpx.get(f"{prod_server}{path}")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(f"{prod_server}{path}", headers={"Authorization": f"Bearer {WRITE_KEY}"})
    assert wrong.status_code == 401
    allowed = httpx.get(f"{prod_server}{path}", headers={"Authorization": f"Bearer {READ_KEY}"})
    assert allowed.status_code == 200


def test_the_compose_stack_gives_the_collector_a_read_key_and_prometheus_sends_it() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    environment = compose["services"]["ingest"]["environment"]
    assert environment["FS_ENVIRONMENT"] == "prod"
    assert environment["FS_INGEST__READ_KEY_SHA256"].startswith("${FS_WAREHOUSE__READ_KEY_SHA256:?")
    prometheus = yaml.safe_load((root / "infra" / "prometheus.yml").read_text())
    job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "ingest")
    assert job["authorization"] == {"credentials_file": "/run/secrets/warehouse_read_key"}
