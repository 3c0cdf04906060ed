"""The demo page in a real browser (Debian's Chromium driven by Playwright) against the whole pipeline.

Every service runs as its own process, as in production: collector, stream processor, warehouse
(loader + query API on a fresh chdb) and inference service, on the real local Kafka and S3 server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clickhouse.settings import read_key_headers
from ops.pipeline import LocalPipeline, Ports

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` refreshes the README's pictures; a plain test run keeps the tree clean.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("FS_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "funnelstream-screenshots"
)
INGEST, WAREHOUSE, INFERENCE, STREAM_WEB = 8010, 8110, 8210, 6076

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make install-browser)"),
]


@pytest.fixture(scope="module")
def pipeline(kafka, s3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    with LocalPipeline(
        tmp_path_factory.mktemp("pipeline"),
        Ports(INGEST, WAREHOUSE, INFERENCE, STREAM_WEB),
        kafka,
        namespace=f"browser-{uuid.uuid4().hex[:8]}",
        env={"FS_STREAM__TIMER_INTERVAL_S": "1"},
    ) as running:
        yield {"ingest": running.ingest_url, "warehouse": running.warehouse_url, "read_key": running.warehouse_read_key}


@pytest.fixture
def browser_page(pipeline: dict[str, str]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        page = context.new_page()
        yield page
        context.close()
        browser.close()


def _sql(pipeline: dict[str, str], sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{pipeline['warehouse']}/v1/sql",
        json={"sql": sql, "parameters": parameters},
        headers=read_key_headers(pipeline["read_key"]),
        timeout=30,
    )
    response.raise_for_status()
    return list(response.json()["rows"])


def _wait_rows(pipeline: dict[str, str], sql: str, parameters: dict[str, Any], done: Any, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = _sql(pipeline, sql, parameters)
        if done(rows):
            return rows
        time.sleep(1)
    raise AssertionError(f"timed out waiting; last rows {rows}")


def test_the_whole_editing_flow_reaches_clickhouse(pipeline: dict[str, str], browser_page: Any) -> None:
    page = browser_page
    page.goto(f"{pipeline['ingest']}/demo")
    page.wait_for_function("document.getElementById('variant').textContent !== '…'")
    page.click("#sample")
    page.wait_for_selector("#step-tool:not(.locked)")
    page.click("[data-tool=rectangle]")
    box = page.locator("#mask").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 150, box["y"] + 120)
    page.mouse.down()
    page.mouse.move(box["x"] + 260, box["y"] + 220)
    page.mouse.up()
    page.wait_for_selector("#step-inference:not(.locked)")
    page.select_option("#inference", "2")  # enhance
    page.click("#run")
    page.wait_for_selector("#step-save:not(.locked)", timeout=120_000)
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    with page.expect_download(timeout=60_000):
        page.click("#save")
    assert not [m for m in messages if "Error" in m], messages
    page.click("#stars button:nth-child(4)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "demo-page.png"))
    anonymous_id = page.evaluate("window.funnelstream.anonymousId()")

    steps = {"image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted"}
    rows = _wait_rows(
        pipeline,
        "SELECT event_type, count() AS n FROM events FINAL WHERE anonymous_id = {a:String} GROUP BY event_type",
        {"a": anonymous_id},
        lambda rows: steps <= {row["event_type"] for row in rows},
        timeout_s=120,
    )
    counts = {row["event_type"]: int(row["n"]) for row in rows}
    assert all(counts[step] == 1 for step in steps), counts

    funnel = httpx.get(
        f"{pipeline['warehouse']}/v1/funnel",
        params={"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "unit": "input_id"},
        headers=read_key_headers(pipeline["read_key"]),
        timeout=60,
    ).json()
    assert any(int(row["step"]) == 5 and int(row["units"]) >= 1 for row in funnel["rows"]), funnel


def test_a_queued_event_is_delivered_on_page_hide(pipeline: dict[str, str], browser_page: Any) -> None:
    page = browser_page
    page.goto(f"{pipeline['ingest']}/demo")
    page.wait_for_function("document.getElementById('variant').textContent !== '…'")
    # A long flush interval: only the pagehide beacon can deliver this event.
    event_id = page.evaluate(
        """() => { window.funnelstream.init(document.querySelector('meta[name=fs-write-key]').content,
                       location.origin, {batchSize: 100, flushIntervalMs: 600000});
                   return window.funnelstream.track('experiment_exposure',
                       {experiment_key: 'beacon_check', variant: 'control'}); }"""
    )
    page.goto("about:blank")  # fires pagehide
    _wait_rows(
        pipeline,
        "SELECT count() AS n FROM events WHERE event_id = {e:UUID}",
        {"e": event_id},
        lambda rows: rows and int(rows[0]["n"]) >= 1,
    )


def test_events_queued_offline_are_delivered_once_back_online(pipeline: dict[str, str], browser_page: Any) -> None:
    page = browser_page
    page.goto(f"{pipeline['ingest']}/demo")
    page.wait_for_function("document.getElementById('variant').textContent !== '…'")
    page.context.set_offline(True)
    event_ids = page.evaluate(
        """() => { const ids = [];
                   for (let i = 0; i < 3; i++) ids.push(window.funnelstream.track('experiment_exposure',
                       {experiment_key: 'offline_check_' + i, variant: 'control'}));
                   window.funnelstream.flush(); return ids; }"""
    )
    time.sleep(1.5)
    assert page.evaluate("window.funnelstream.pending()") >= 3
    assert len(page.evaluate("JSON.parse(localStorage.getItem('fs_queue'))")) >= 3  # survives a reload
    page.context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    rows = _wait_rows(
        pipeline,
        "SELECT toString(event_id) AS id, count() AS n FROM events WHERE event_id IN {ids:Array(UUID)} GROUP BY id",
        {"ids": event_ids},
        lambda rows: len(rows) == 3,
    )
    assert all(int(row["n"]) == 1 for row in rows), rows
    assert page.evaluate("window.funnelstream.pending()") == 0


def test_the_funnel_report_renders_in_the_browser(pipeline: dict[str, str], browser_page: Any, tmp_path: Path) -> None:
    # Runs after the editing flow above, so the warehouse holds at least one complete journey.
    report = tmp_path / "funnel.html"
    command = [sys.executable, "-m", "ops.cli", "report", "funnel", "--from", "2020-01-01T00:00:00Z",
               "--to", "2100-01-01T00:00:00Z", "--html", str(report)]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, "FS_WAREHOUSE__API_URL": pipeline["warehouse"]})
    page = browser_page
    page.goto(report.as_uri())
    assert "image_uploaded" in page.content()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "funnel-report.png"), full_page=True)


def test_the_treatment_arm_offers_segmentation_proposals_to_click(pipeline: dict[str, str], browser_page: Any) -> None:
    page = browser_page
    # experiments.yaml forces this QA device into the treatment arm.
    page.add_init_script("localStorage.setItem('fs_anonymous_id', 'qa-device-treatment')")
    page.goto(f"{pipeline['ingest']}/demo")
    page.wait_for_function("document.getElementById('variant').textContent === 'treatment'")
    assert page.is_visible("#segmentation")
    page.click("#sample")
    page.wait_for_selector("#step-tool:not(.locked)")
    page.click("#segmentation")
    note = "document.getElementById('proposals-note').textContent"
    page.wait_for_function(f"/regions proposed/.test({note})", timeout=90_000)
    assert not page.evaluate(note).startswith("0 ")
    # The sample image's red disc is centred at (330, 230): clicking it must select a proposal.
    box = page.locator("#mask").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 330, box["y"] + 230)
    page.wait_for_selector("#step-inference:not(.locked)", timeout=5000)


def test_every_running_service_exports_its_metrics(pipeline: dict[str, str]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    expected = {
        f"http://127.0.0.1:{INGEST}/metrics": {"ingest_events_accepted", "ingest_produce_latency_seconds"},
        f"http://127.0.0.1:{STREAM_WEB}/metrics": {"stream_events", "stream_dedup_hits", "stream_open_sessions"},
        f"http://127.0.0.1:{WAREHOUSE}/metrics": {"funnelstream_loader_batches", "funnelstream_loader_insert_seconds"},
        f"http://127.0.0.1:{INFERENCE}/metrics": {"inference_jobs"},
    }
    # The warehouse's /metrics needs its read key, like every route of it but /healthz.
    headers = {f"http://127.0.0.1:{WAREHOUSE}/metrics": read_key_headers(pipeline["read_key"])}
    for url, families in expected.items():
        response = httpx.get(url, headers=headers.get(url), timeout=10)
        assert response.status_code == 200, url
        names = {family.name for family in text_string_to_metric_families(response.text)}
        assert families <= names, (url, families - names)
