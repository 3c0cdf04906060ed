"""The query API needs a read key, and bounds what one client may send.

Every route but /healthz answers 401 without a configured read key, before any body is read;
wrong keys from one address are throttled; a body over its limit gets 413 after at most that
much is read, so a 300 MiB body streamed at a real ``warehouse serve`` leaves its memory alone;
the public dev key is refused at start-up in prod.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

from clickhouse.api import create_app
from clickhouse.backend import Warehouse, open_warehouse
from clickhouse.migrate import migrate
from clickhouse.settings import DEV_READ_KEY, WarehouseConfig, WarehouseSettings, hash_read_key
from funnelstream.errors import ConfigurationError
from funnelstream.ratelimit import FailedKeyThrottle, address_bucket_name
from funnelstream.settings import ClickHouseConfig
from ops.processes import ServiceProcess
from tests.helpers import raw_http

CURRENT_KEY = "rotated-in-read-key-2"
PREVIOUS_KEY = "rotated-out-read-key-1"
BODY_LIMIT = 64 * 1024
MIB = 1024 * 1024
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def routes() -> list[tuple[str, str]]:
    """(method, path) of every route the app registers, path parameters filled in."""

    def walk(found: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in found:
            if isinstance(route, APIRoute | Route):
                path = re.sub(r"\{[^}]+\}", "x", prefix + route.path)
                yield from ((method, path) for method in sorted(route.methods or ()) if method != "HEAD")
            elif hasattr(route, "original_router"):  # FastAPI's record of include_router
                yield from walk(route.original_router.routes, prefix + route.include_context.prefix)
            else:
                raise TypeError(f"a route of a kind this test does not know: {route!r}")

    return list(walk(create_app(WarehouseSettings()).routes, ""))


ROUTES = routes()
# The workspace's pages send a browser to their login form instead: tests/security/test_workspace_routes.py.
KEYED_ROUTES = [route for route in ROUTES if route[1] != "/healthz" and not route[1].startswith("/ui")]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    path = tmp_path_factory.mktemp("warehouse-access") / "chdb"
    engine = open_warehouse(ClickHouseConfig(chdb_path=path, database=f"fs_access_{uuid.uuid4().hex[:8]}"))
    migrate(engine)
    yield engine
    engine.close()


def settings_for(**overrides: Any) -> WarehouseSettings:
    return WarehouseSettings(
        warehouse=WarehouseConfig(
            read_key_sha256=[hash_read_key(CURRENT_KEY), hash_read_key(PREVIOUS_KEY)],
            max_body_bytes=BODY_LIMIT,
            **overrides,
        )
    )


@pytest.fixture
def client(warehouse: Warehouse) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(), warehouse=warehouse, run_loader=False)) as opened:
        yield opened


def assert_refused(response: object, status: int, field: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["field"] == field and body["error"] and body["detail"], body


def test_the_routes_of_the_api_are_all_listed() -> None:
    paths = {path for _, path in ROUTES}
    assert {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/v1/sql"} <= paths
    assert "/v1/experiments/x/results" in paths and ("POST", "/v1/queries/x") in ROUTES


@pytest.mark.parametrize(("method", "path"), KEYED_ROUTES, ids=[f"{m} {p}" for m, p in KEYED_ROUTES])
def test_every_route_but_healthz_needs_a_read_key(client: TestClient, method: str, path: str) -> None:
    assert_refused(client.request(method, path), 401, "Authorization")
    assert_refused(client.request(method, path, headers=bearer("not-a-key")), 401, "Authorization")
    assert_refused(client.request(method, path, headers={"Authorization": CURRENT_KEY}), 401, "Authorization")
    # A GET has no body to check; a POST gets a minimal valid one, so the route itself answers.
    answered = client.request(method, path, headers=bearer(CURRENT_KEY), json={} if method == "POST" else None)
    assert answered.status_code not in (401, 413, 429) and answered.status_code < 500, answered.text


def test_healthz_stays_open(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200


def test_each_rotated_key_reads_and_the_dev_key_does_not(client: TestClient) -> None:
    for key in (CURRENT_KEY, PREVIOUS_KEY):
        assert client.get("/readyz", headers=bearer(key)).json()["status"] == "ready"
        response = client.post("/v1/sql", json={"sql": "SELECT 1 AS ok"}, headers=bearer(key))
        assert response.status_code == 200 and response.json()["rows"] == [{"ok": 1}], response.text
        assert "funnelstream" in client.get("/openapi.json", headers=bearer(key)).text.lower()
    assert_refused(client.get("/readyz", headers=bearer(DEV_READ_KEY)), 401, "Authorization")


def test_repeated_wrong_keys_from_one_address_get_429(warehouse: Warehouse) -> None:
    settings = settings_for(auth_failures_burst=3, auth_failures_per_minute=1.0)
    app = create_app(settings, warehouse=warehouse, run_loader=False)
    with (
        TestClient(app, client=("198.51.100.7", 4000)) as attacker,
        TestClient(app, client=("203.0.113.9", 4000)) as neighbour,
    ):
        for attempt in range(3):
            assert_refused(attacker.get("/readyz", headers=bearer(f"guess-{attempt}")), 401, "Authorization")
        throttled = attacker.get("/readyz", headers=bearer("guess-3"))
        assert_refused(throttled, 429, "Authorization")
        assert int(throttled.headers["Retry-After"]) >= 1
        # Refused before the key is looked at: a right guess cannot be told from a wrong one.
        assert_refused(attacker.get("/readyz", headers=bearer(CURRENT_KEY)), 429, "Authorization")
        assert neighbour.get("/readyz", headers=bearer(CURRENT_KEY)).status_code == 200


def test_the_wrong_key_throttle_is_bounded_and_refills() -> None:
    now = [0.0]
    throttle = FailedKeyThrottle(burst=2, rate_per_s=1.0, max_addresses=3, clock=lambda: now[0])
    for n in range(10):
        throttle.charge(f"192.0.2.{n}")
    assert len(throttle) == 3
    throttle.charge("192.0.2.9")
    assert throttle.wait_s("192.0.2.9") == pytest.approx(1.0)
    now[0] += 1.0
    assert throttle.wait_s("192.0.2.9") == 0.0
    assert address_bucket_name("2001:db8::1") == address_bucket_name("2001:db8::ffff:2")
    # IPv4 clients of a dual-stack listener are IPv4-mapped: each is still its own address.
    assert address_bucket_name("::ffff:192.0.2.1") == "192.0.2.1"


def test_prod_refuses_the_dev_read_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from clickhouse.cli import warehouse_app

    monkeypatch.setenv("FS_ENVIRONMENT", "prod")
    monkeypatch.setenv("FS_S3__SECRET_KEY", "a-real-secret")
    with pytest.raises(ConfigurationError, match="FS_WAREHOUSE__READ_KEY_SHA256"):
        WarehouseSettings()
    refused = CliRunner().invoke(warehouse_app, ["serve", "--no-loader"])
    assert isinstance(refused.exception, ConfigurationError), refused.output
    monkeypatch.setenv("FS_WAREHOUSE__READ_KEY_SHA256", f'["{hash_read_key(CURRENT_KEY)}"]')
    assert WarehouseSettings().warehouse.read_key_sha256 == [hash_read_key(CURRENT_KEY)]


def test_a_body_over_its_limit_gets_401_without_a_key_and_413_with_one(client: TestClient) -> None:
    oversized = b'{"sql": "SELECT 1", "pad": "' + b"x" * BODY_LIMIT + b'"}'
    assert_refused(client.post("/v1/sql", content=oversized), 401, "Authorization")
    assert_refused(client.post("/v1/sql", content=oversized, headers=bearer(CURRENT_KEY)), 413, "body")
    named = client.post("/v1/queries/freshness", content=oversized, headers=bearer(CURRENT_KEY))
    assert_refused(named, 413, "body")
    streamed = client.post("/v1/sql", content=iter([oversized[:1000], oversized[1000:]]), headers=bearer(CURRENT_KEY))
    assert_refused(streamed, 413, "body")
    assert_refused(client.request("GET", "/readyz", content=b"x", headers=bearer(CURRENT_KEY)), 413, "body")
    # Just under the limit still reads.
    padded = {"sql": "SELECT 1 AS ok" + " " * (BODY_LIMIT - 100)}
    response = client.post("/v1/sql", json=padded, headers=bearer(CURRENT_KEY))
    assert response.status_code == 200 and response.json()["rows"] == [{"ok": 1}], response.text


# --- the real process -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Served:
    process: ServiceProcess
    port: int

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``funnelstream warehouse serve`` as in production, with its own data path and keys."""
    workdir = tmp_path_factory.mktemp("warehouse-serve")
    port = free_port()
    env = {
        "FS_CLICKHOUSE__CHDB_PATH": str(workdir / "chdb"),
        "FS_WAREHOUSE__READ_KEY_SHA256": f'["{hash_read_key(CURRENT_KEY)}"]',
        # The tests here send a few wrong keys on purpose; the throttle has its own test above.
        "FS_WAREHOUSE__AUTH_FAILURES_BURST": "1000",
        "FS_WAREHOUSE__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "FS_WAREHOUSE__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "FS_LOG_LEVEL": "WARNING",
    }
    process = ServiceProcess(
        "warehouse",
        ["warehouse", "serve", "--no-loader", "--host", "127.0.0.1", "--port", str(port)],
        workdir / "logs",
        env,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        ready_headers=bearer(CURRENT_KEY),
    )
    process.start()
    try:
        process.wait_ready(120)
        yield Served(process, port)
    finally:
        process.stop()


def memory_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {name: int(value) for name, value in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.MULTILINE)}


@pytest.mark.integration
@pytest.mark.parametrize(("headers", "status"), [({}, 401), (bearer(CURRENT_KEY), 413)], ids=["no key", "read key"])
def test_a_streamed_300_mib_body_does_not_grow_the_warehouse_process(
    served: Served, headers: dict[str, str], status: int
) -> None:
    pid = served.pid
    before = memory_kib(pid)["VmRSS"]
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart VmHWM: the peak from here on
    answer = raw_http.stream_body(f"http://127.0.0.1:{served.port}", "/v1/sql", 300 * MIB, headers, chunked=True)
    answered, sent = answer.status, answer.sent_bytes
    peak = memory_kib(pid)["VmHWM"]
    assert peak - before < 40 * 1024, f"RSS {before} kB before, peak {peak} kB while {sent} bytes came in"
    assert answered == status, f"answered {answered} after {sent} bytes"
    assert served.process.running


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/metrics", "/docs", "/openapi.json", "/readyz", "/v1/freshness"])
def test_the_published_port_answers_only_with_the_read_key(served: Served, path: str) -> None:
    import httpx

    url = served.url(path)
    assert_refused(httpx.get(url, timeout=10), 401, "Authorization")
    assert_refused(httpx.get(url, headers=bearer(DEV_READ_KEY), timeout=10), 401, "Authorization")
    assert httpx.get(url, headers=bearer(CURRENT_KEY), timeout=10).status_code == 200
    assert httpx.get(served.url("/healthz"), timeout=10).status_code == 200


@pytest.mark.integration
def test_a_sender_of_one_header_byte_a_second_is_cut_at_the_header_timeout(served: Served) -> None:
    head = f"GET /readyz HTTP/1.1\r\nHost: warehouse\r\nAuthorization: Bearer {CURRENT_KEY}\r\n\r\n".encode()
    with raw_http.connect(served.url("")) as sock:
        elapsed, sent, answer = raw_http.send_slowly(sock, head, give_up_s=HEADER_TIMEOUT_S * 10)
    assert sent < len(head), "the whole slow head was accepted"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    # The configured timeout, give or take the one-second gap between bytes.
    assert HEADER_TIMEOUT_S - 0.5 <= elapsed <= HEADER_TIMEOUT_S + 2


@pytest.mark.integration
def test_a_body_sent_one_byte_a_second_is_cut_at_the_body_timeout(served: Served) -> None:
    body = b'{"sql": "SELECT 1 AS ok"}' + b" " * 60
    head = (
        f"POST /v1/sql HTTP/1.1\r\nHost: warehouse\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {CURRENT_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with raw_http.connect(served.url("")) as sock:
        sock.sendall(head)
        elapsed, sent, answer = raw_http.send_slowly(sock, body, give_up_s=BODY_TIMEOUT_S * 10)
    assert sent < len(body), "the whole slow body was accepted"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert BODY_TIMEOUT_S - 0.5 <= elapsed <= BODY_TIMEOUT_S + 2


@pytest.mark.integration
@pytest.mark.parametrize("headers", raw_http.OVERSIZED_HEADS.values(), ids=raw_http.OVERSIZED_HEADS.keys())
def test_oversized_heads_are_refused_431(served: Served, headers: bytes) -> None:
    # /healthz needs no key: the limit holds before any route, keyed or not.
    answer = raw_http.send_head(served.url(""), b"GET /healthz HTTP/1.1\r\nHost: warehouse\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


@pytest.mark.integration
def test_readers_send_the_configured_read_key(served: Served) -> None:
    from clickhouse.client import ApiReader, connect
    from clickhouse.qa.remote import WarehouseApi

    configured = WarehouseSettings(warehouse=WarehouseConfig(api_url=served.url(""), read_key=CURRENT_KEY))
    reader = connect(configured)
    try:
        assert reader.via_api and reader.query_rows("SELECT 1 AS ok") == [{"ok": 1}]
    finally:
        reader.close()
    api = WarehouseApi(served.url(""), read_key=CURRENT_KEY)
    try:
        assert api.ready() and api.query_rows("SELECT 2 AS ok") == [{"ok": 2}]
    finally:
        api.close()
    # A reader with the wrong key is told it is its configuration, not that the warehouse is away.
    wrong = ApiReader(served.url(""), "not-the-key")
    try:
        with pytest.raises(ConfigurationError, match="FS_WAREHOUSE__READ_KEY"):
            wrong.query_rows("SELECT 1")
    finally:
        wrong.close()


@pytest.mark.integration
def test_status_probes_the_warehouse_with_its_key_and_no_other_service(served: Served) -> None:
    from contextlib import AbstractContextManager

    from clickhouse.qa.settings import QAConfig, QASettings
    from ops.status import Health, collect_status

    def no_lease() -> AbstractContextManager[Warehouse]:
        raise RuntimeError("status reads no warehouse in this test")

    ready = served.url("/readyz")
    # The same URL under another stage name stands for a service that must not be sent the key.
    settings = QASettings(qa=QAConfig(readiness_urls={"warehouse": ready, "other": ready}, consumer_groups={}))
    stages = collect_status(settings, no_lease, read_key=CURRENT_KEY)
    health = {stage.stage: stage.health for stage in stages if stage.probe == "ready"}
    assert health == {"warehouse": Health.OK, "other": Health.DOWN}


def test_compose_publishes_the_warehouse_only_behind_its_read_keys() -> None:
    import json

    import yaml

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    warehouse = compose["services"]["warehouse"]
    assert warehouse["ports"] and warehouse["environment"]["FS_ENVIRONMENT"] == "prod"
    # Required: compose refuses to start without them, and prod refuses the dev key's hash.
    assert warehouse["environment"]["FS_WAREHOUSE__READ_KEY_SHA256"].startswith("${FS_WAREHOUSE__READ_KEY_SHA256:?")
    assert "Authorization: Bearer $$FS_WAREHOUSE__READ_KEY" in " ".join(warehouse["healthcheck"]["test"])
    assert compose["services"]["heartbeat"]["environment"]["FS_WAREHOUSE__READ_KEY"].startswith("${")
    secret = compose["secrets"]["warehouse_read_key"]
    assert secret == {"environment": "FS_WAREHOUSE__READ_KEY"}
    assert "warehouse_read_key" in compose["services"]["prometheus"]["secrets"]
    prometheus = yaml.safe_load((root / "infra" / "prometheus.yml").read_text())
    job = next(job for job in prometheus["scrape_configs"] if job["job_name"] == "warehouse")
    assert job["authorization"] == {"credentials_file": "/run/secrets/warehouse_read_key"}
    # The example env file is one consistent (dev) stack: its key is the one its hashes list.
    example = dict(
        line.split("=", 1) for line in (root / ".env.example").read_text().splitlines() if line[:1] not in ("", "#")
    )
    hashes = json.loads(example["FS_WAREHOUSE__READ_KEY_SHA256"])
    assert hash_read_key(example["FS_WAREHOUSE__READ_KEY"]) in hashes
