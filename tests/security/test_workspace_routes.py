"""Hostile clients on the workspace's pages and its login, on the real warehouse app.

A page answers only with the read key (header, or for GET/HEAD the login cookie); without it a
browser is sent (303) to the login form, every API route keeps its 401. The cookie never
authorizes a POST; the login form reads at most 4 KiB, charges wrong keys to the throttle and
sends nobody off the workspace; values from the URL or the data are shown as text under a CSP
that runs only the project's own scripts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from clickhouse.access import READ_KEY_COOKIE
from clickhouse.api import create_app
from clickhouse.backend import Warehouse, open_warehouse
from clickhouse.migrate import migrate
from clickhouse.settings import WarehouseConfig, WarehouseSettings, hash_read_key
from funnelstream.settings import ClickHouseConfig

KEY = "workspace-read-key-1"
PAGES = ["/ui", "/ui/funnel", "/ui/task-time", "/ui/experiments", "/ui/experiments/segmentation_tool", "/ui/pipeline"]
XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
STATIC = Path(__file__).parents[2] / "clickhouse" / "workspace" / "static" / "workspace.js"


def settings_for(config: ClickHouseConfig, **overrides: object) -> WarehouseSettings:
    return WarehouseSettings(
        clickhouse=config, warehouse=WarehouseConfig(read_key_sha256=[hash_read_key(KEY)], **overrides)
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ClickHouseConfig:
    path = tmp_path_factory.mktemp("workspace-routes") / "chdb"
    return ClickHouseConfig(chdb_path=path, database=f"fs_ws_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def warehouse(config: ClickHouseConfig) -> Iterator[Warehouse]:
    engine = open_warehouse(config)
    migrate(engine)
    yield engine
    engine.close()


@pytest.fixture
def client(config: ClickHouseConfig, warehouse: Warehouse) -> Iterator[TestClient]:
    app = create_app(settings_for(config), warehouse=warehouse, run_loader=False)
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def logged_in(client: TestClient) -> TestClient:
    client.cookies.set(READ_KEY_COOKIE, KEY)
    return client


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_a_page_without_the_key_sends_a_browser_to_the_login_form(
    client: TestClient, path: str, headers: dict[str, str]
) -> None:
    for method in ("GET", "HEAD"):
        response = client.request(method, path, params={"unit": "device"}, headers=headers)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/ui/login?next={quote(path + '?unit=device', safe='')}"
        assert "content-security-policy" in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/funnel"), ("GET", "/v1/time-to-convert"), ("GET", "/ui/static/plotly.min.js"), ("POST", "/ui/x")],
)
def test_everything_else_keeps_its_401(client: TestClient, method: str, path: str) -> None:
    assert client.request(method, path).status_code == 401


def test_a_stale_cookie_is_cleared_on_the_way_to_the_login_form(client: TestClient) -> None:
    client.cookies.set(READ_KEY_COOKIE, "rotated-out")
    response = client.get("/ui/funnel")
    assert response.status_code == 303 and "Max-Age=0" in response.headers["set-cookie"]


def test_the_cookie_reads_but_never_authorizes_a_post(client: TestClient) -> None:
    logged_in(client)
    assert client.get("/ui/funnel").status_code == 200
    assert client.get("/v1/funnel", params={"steps": "image_uploaded,image_saved"}).status_code == 200
    assert client.get("/ui/static/plotly.min.js").status_code == 200
    # A form on another site can make the browser POST with its cookies: they must count for nothing.
    refused = client.post("/v1/sql", json={"sql": "SELECT 1"})
    assert refused.status_code == 401 and refused.json()["field"] == "Authorization"
    assert client.post("/v1/queries/freshness", json={"parameters": {"minutes": 5}}).status_code == 401
    assert client.post("/v1/sql", json={"sql": "SELECT 1"}, headers={"Authorization": f"Bearer {KEY}"}).is_success


def test_login_sets_a_strict_http_only_cookie_and_goes_on_to_next(client: TestClient) -> None:
    response = client.post("/ui/login", data={"key": KEY, "next": "/ui/pipeline?live=1"})
    assert response.status_code == 303 and response.headers["location"] == "/ui/pipeline?live=1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{READ_KEY_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie
    assert client.get("/ui/pipeline").status_code == 200


def test_the_cookie_is_secure_over_https(config: ClickHouseConfig, warehouse: Warehouse) -> None:
    app = create_app(settings_for(config), warehouse=warehouse, run_loader=False)
    with TestClient(app, base_url="https://workspace.example", follow_redirects=False) as client:
        response = client.post("/ui/login", data={"key": KEY})
    assert "; Secure" in response.headers["set-cookie"]


def test_the_login_form_is_open_and_logout_clears_the_cookie(client: TestClient) -> None:
    form = client.get("/ui/login", params={"next": "/ui/task-time"})
    assert form.status_code == 200 and 'name="key"' in form.text and 'value="/ui/task-time"' in form.text
    logged_in(client)
    response = client.post("/ui/logout")
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert "Max-Age=0" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/ui",
        "//evil.example/ui",
        "/\\evil.example",
        "/ui\\@evil.example",
        "\\\\evil.example/ui",
        "/uix",
        "/v1/sql",
        "javascript:alert(1)",
        "/ui/../v1/sql",
        "/ui\r\nSet-Cookie: planted=1",
        "/ui/\tfunnel",
        "/ui/" + "a" * 3000,
        "",
    ],
)
def test_login_never_sends_anyone_off_the_workspace(client: TestClient, target: str) -> None:
    response = client.post("/ui/login", data={"key": KEY, "next": target})
    assert response.status_code == 303 and response.headers["location"] == "/ui/funnel"
    assert "planted" not in str(response.headers)
    failed = client.post("/ui/login", data={"key": "wrong", "next": target})
    assert failed.headers["location"] == "/ui/login?failed=1&next=%2Fui%2Ffunnel"
    form = client.get("/ui/login", params={"next": target})
    assert 'name="next" value="/ui/funnel"' in form.text


def test_an_oversized_login_body_is_413(client: TestClient) -> None:
    response = client.post("/ui/login", data={"key": KEY, "next": "/ui/funnel", "pad": "x" * 5000})
    assert response.status_code == 413 and response.json()["field"] == "body"
    assert "set-cookie" not in response.headers


def test_wrong_login_keys_are_charged_to_the_throttle(config: ClickHouseConfig, warehouse: Warehouse) -> None:
    app = create_app(
        settings_for(config, auth_failures_burst=3, auth_failures_per_minute=0.01), warehouse=warehouse,
        run_loader=False,
    )  # fmt: skip
    with TestClient(app, follow_redirects=False) as client:
        for _ in range(3):
            assert client.post("/ui/login", data={"key": "guess"}).headers["location"].startswith("/ui/login?failed")
        throttled = client.post("/ui/login", data={"key": KEY})
        assert throttled.status_code == 429 and "retry-after" in throttled.headers
        assert "set-cookie" not in throttled.headers
        assert client.get("/ui/funnel", headers={"Authorization": f"Bearer {KEY}"}).status_code == 429


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/funnel", {"window": "-1"}, "window"),
        ("/v1/funnel", {"unit": XSS}, "unit"),
        ("/v1/funnel", {"mode": "sideways"}, "mode"),
        ("/v1/funnel", {"breakdown": "1;DROP TABLE events"}, "breakdown"),
        ("/v1/funnel", {"chart": "maybe"}, "chart"),
        ("/v1/time-to-convert", {"format": "xml"}, "format"),
        ("/v1/funnel", {"variant": "v" * 201}, "variant"),
        ("/v1/funnel", {"size": XSS}, "size"),
        ("/v1/funnel/correlation", {"step": "9"}, "step"),
        ("/v1/funnel/over-time", {"interval": "week"}, "interval"),
        ("/v1/funnel/dropped", {"limit": "-1"}, "limit"),
        ("/ui/experiments/" + "k" * 201, {}, "key"),
    ],
)
def test_hostile_parameters_are_422_naming_the_field(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    response = logged_in(client).get(path, params=params)
    assert response.status_code == 422, response.text
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}


def test_hostile_values_in_a_page_url_are_shown_as_text(client: TestClient) -> None:
    names = ("variant", "source", "tool", "from", "experiment", "steps", "unit", "next", "input_id")
    params = {name: XSS for name in names}
    for path in PAGES[1:]:
        response = logged_in(client).get(path, params=params)
        assert response.status_code == 200
        assert XSS not in response.text and '"><script>' not in response.text and "<img" not in response.text
        if path != "/ui/pipeline":  # the one page without a range field to show it in
            assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
        assert re.search(r"<script(?![^>]*\bsrc=\"/ui/static/)(?![^>]*application/json)", response.text) is None
    experiment = client.get("/ui/experiments/" + quote('"><img src=x onerror=alert(1)>', safe=""))
    assert experiment.status_code == 404 and "<img" not in experiment.text


def test_pages_run_only_the_projects_own_scripts(client: TestClient) -> None:
    for path in [*PAGES[1:], "/ui/login"]:
        response = logged_in(client).get(path)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'self'" in policy and "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy and response.headers["x-content-type-options"] == "nosniff"


def test_the_page_script_places_data_only_as_text() -> None:
    script = STATIC.read_text()
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script
