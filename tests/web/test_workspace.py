"""The analysts' workspace in a real browser (Debian's Chromium driven by Playwright) on data sent
through the whole pipeline: collector, stream processor and warehouse, each its own process.

Journeys with a planted drop-off driver (brush images saved half as often) go in through the
collector; then each page, logged in with the read key, must draw its charts and show the API's own
numbers, follow its controls in the URL, download the table it shows, and follow new events live.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from clickhouse.settings import read_key_headers
from ops.pipeline import LocalPipeline, Ports
from tests.helpers.workspace_browser import (
    CHROMIUM,
    chromium,
    log_in,
    page_state,
    panel_request,
    panel_table,
    wait_drawn,
)
from tests.helpers.workspace_data import (
    PLANTED_TOOL,
    busy_retried,
    heartbeats,
    planted_events,
    send,
    upload_now,
    wait_events,
)

ROOT = Path(__file__).resolve().parents[2]
# `make screenshots` refreshes the README's pictures; a plain test run keeps the tree clean.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("FS_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "funnelstream-screenshots"
)
INGEST, WAREHOUSE, INFERENCE, STREAM_WEB = 18_630, 18_631, 18_632, 18_633
EXPERIMENT = "segmentation_tool"
SAVE_STEP = 4
"""image_saved among the default steps (upload, tool, inference, save, score)."""
PAGES = {
    "funnel": f"/ui/funnel?step={SAVE_STEP}",
    "task-time": "/ui/task-time",
    "experiments": "/ui/experiments",
    "experiment": f"/ui/experiments/{EXPERIMENT}",
    "pipeline": "/ui/pipeline",
}
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d")
TABLE_ROWS = 10_000
"""A panel's table shows at most this many of its answer's rows."""

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make install-browser)"),
]


@dataclass(frozen=True)
class Workspace:
    ingest: str
    warehouse: str
    read_key: str
    prefix: str

    def api(self, route: str, params: Any = None) -> httpx.Response:
        headers = read_key_headers(self.read_key)
        return busy_retried(lambda: httpx.get(f"{self.warehouse}{route}", params=params, headers=headers, timeout=60))


@pytest.fixture(scope="module")
def workspace(kafka, s3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:  # type: ignore[no-untyped-def]
    prefix = f"ws-{uuid.uuid4().hex[:6]}-"
    with LocalPipeline(
        tmp_path_factory.mktemp("pipeline"),
        Ports(INGEST, WAREHOUSE, INFERENCE, STREAM_WEB),
        kafka,
        namespace=f"workspace-{uuid.uuid4().hex[:8]}",
        env={"FS_STREAM__TIMER_INTERVAL_S": "1"},
    ) as running:
        events = planted_events(prefix, datetime.now(UTC))
        assert send(running.ingest_url, events) == len(events)
        with heartbeats(running.ingest_url):
            wait_events(running.warehouse_url, running.warehouse_read_key, prefix, len(events))
            yield Workspace(running.ingest_url, running.warehouse_url, running.warehouse_read_key, prefix)


@pytest.fixture(scope="module")
def session(workspace: Workspace) -> Iterator[Any]:
    """One browser logged in once: its cookie serves every page of the module."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        first = context.new_page()
        log_in(first, workspace.warehouse, workspace.read_key)
        first.close()
        yield context
        context.close()


@pytest.fixture
def page(session: Any) -> Iterator[Any]:
    page = session.new_page()
    yield page
    page.close()


def _open(page: Any, workspace: Workspace, path: str) -> list[dict[str, str]]:
    page.goto(f"{workspace.warehouse}{path}")
    return wait_drawn(page)


def _answer(workspace: Workspace, route: str, page_url: str, **extra: str) -> Any:
    path, params = panel_request(route, page_url)
    return workspace.api(path, [*params, *extra.items()])


@pytest.mark.parametrize("name", list(PAGES))
def test_each_page_draws_its_charts(page: Any, workspace: Workspace, name: str) -> None:
    shown = _open(page, workspace, PAGES[name])
    if name == "experiments":
        # The list of definitions: each links to its experiment's page, with its status as text.
        link = page.locator(f"a[href='{PAGES['experiment']}']")
        assert link.count() == 1 and "running" in page.inner_text("main"), page.inner_text("main")
    else:
        assert shown, f"{name}: no panels"
    page.wait_for_function("() => /^data as of \\d/.test(document.getElementById('as-of').textContent)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"workspace-{name}.png"), full_page=True)


@pytest.mark.parametrize("name", list(PAGES))
def test_a_page_shows_the_api_s_numbers(page: Any, workspace: Workspace, name: str) -> None:
    fetched: list[Any] = []
    page.on("response", lambda response: fetched.append(response))
    shown = _open(page, workspace, PAGES[name])
    assert shown or name == "experiments", f"{name}: no panels"
    for panel in shown:
        where = f"{name}/{panel['id']}"
        table = panel_table(page, panel["id"])
        # What the page drew is its route's answer, to the digit ...
        drawn = _drawn_answer(fetched, panel["route"])
        _assert_table_is(table, drawn["rows"], where)
        if drawn.get("figure"):
            assert page.locator(f"[data-panel='{panel['id']}'] .js-plotly-plot svg").count(), where
        # ... and the API asked again for the same state answers the same; the pipeline page looks
        # back from now, so there only what names its rows (stages, sources, checks) must stay.
        answer = _answer(workspace, panel["route"], page.url).json()
        _assert_table_is(table, answer["rows"], where, moving=name == "pipeline")


def test_the_planted_driver_tops_the_correlation_at_the_save_step(page: Any, workspace: Workspace) -> None:
    answer = workspace.api("/v1/funnel/correlation", {"step": SAVE_STEP}).json()
    top = answer["rows"][0]
    assert (top["property"], top["value"]) == ("tool", PLANTED_TOOL), answer["rows"][:5]
    assert float(top["odds_ratio"]) < 0.6 and top["significant"], top
    _open(page, workspace, f"/ui/funnel?step={SAVE_STEP}")
    table = panel_table(page, "correlation")
    first = dict(zip(table["headers"], table["rows"][0], strict=True))
    assert (first["property"], first["value"]) == ("tool", PLANTED_TOOL), first


def test_changing_a_control_changes_the_url_and_the_result(page: Any, workspace: Workspace) -> None:
    _open(page, workspace, "/ui/funnel")
    before_url, before = page.url, panel_table(page, "steps")
    with page.expect_navigation():
        page.select_option("select[name=unit]", "anonymous_id")
    wait_drawn(page)
    assert ("unit", "anonymous_id") in page_state(page.url) and page.url != before_url
    after = panel_table(page, "steps")
    assert after["rows"] != before["rows"], after
    _assert_table_is(after, _answer(workspace, "/v1/funnel", page.url).json()["rows"], "steps by device")


def test_a_csv_download_equals_the_table(page: Any, workspace: Workspace) -> None:
    shown = _open(page, workspace, f"/ui/funnel?step={SAVE_STEP}")
    for panel in shown:
        table = panel_table(page, panel["id"])
        with page.expect_download() as download:
            page.click(f"[data-panel='{panel['id']}'] a[data-csv]")
        rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        if not table["rows"]:
            assert len(rows) <= 1, (panel["id"], rows[:3])
            continue
        assert rows[0] == table["headers"], panel
        _assert_table_is(table, [dict(zip(rows[0], row, strict=True)) for row in rows[1:]], f"csv {panel['id']}")


def test_the_live_view_shows_an_event_sent_after_it_opened(page: Any, workspace: Workspace) -> None:
    _open(page, workspace, "/ui/funnel?live=1")
    entered = _first_step_units(panel_table(page, "steps"))
    device = f"{workspace.prefix}live-{uuid.uuid4().hex[:6]}"
    send(workspace.ingest, [upload_now(device, str(uuid.uuid4()), str(uuid.uuid4()))])
    # The page refetches on its own: no reload, and the first step's count goes up.
    page.wait_for_function(
        """([id, before]) => { const table = document.querySelector(`[data-panel='${id}'] table`);
               const columns = Array.from(table.querySelectorAll('thead th'), (th) => th.textContent);
               const row = table.querySelector('tbody tr');
               return row !== null && Number(row.cells[columns.indexOf('units')].textContent) > before; }""",
        arg=["steps", entered],
        timeout=45_000,
    )


def _drawn_answer(responses: list[Any], route: str) -> Any:
    """The last answer the page got for a panel's route (its path and its own fixed parameters)."""
    path, _, fixed = route.partition("?")
    for response in reversed(responses):
        url = urlsplit(response.url)
        if url.path == path and set(parse_qsl(fixed)) <= set(parse_qsl(url.query)) and "chart=1" in url.query:
            return response.json()
    raise AssertionError(f"the page never fetched {route}")


def _first_step_units(table: dict[str, Any]) -> float:
    if not table["rows"]:
        return 0.0
    first = dict(zip(table["headers"], table["rows"][0], strict=True))
    return float(first["units"])


def _assert_table_is(table: dict[str, Any], rows: list[dict[str, Any]], where: str, *, moving: bool = False) -> None:
    """Every cell the page shows is the answer's value (numbers compared as numbers); ``moving``:
    only the cells that are neither numbers nor times (they move with the clock)."""
    assert len(table["rows"]) == min(len(rows), TABLE_ROWS), (where, len(table["rows"]), len(rows))
    for shown, expected in zip(table["rows"], rows[:TABLE_ROWS], strict=True):
        for header, cell in zip(table["headers"], shown, strict=True):
            assert header in expected, (where, header, list(expected))
            if moving and _moves(expected[header]):
                continue
            assert _same(cell, expected[header]), (where, header, cell, expected[header])


def _same(cell: str, value: Any) -> bool:
    """The shown text is the value at the precision shown (a '%' shows a share, times 100)."""
    if value is None:
        return cell in ("", "null", "None", "—")
    if isinstance(value, bool):
        return cell.lower() in (str(value).lower(), "yes" if value else "no", "✓" if value else "")
    if isinstance(value, list | dict):
        return cell == json.dumps(value, separators=(",", ":"))
    if isinstance(value, int | float) or _is_number(str(value)):
        text = cell.replace(",", "").replace("\u2009", "").strip()
        share = text.endswith("%")
        text = text.rstrip("% ")
        if not _is_number(text):
            return False
        decimals = len(text.partition(".")[2]) if "e" not in text.lower() else 15
        shown, number = float(text), float(value) * (100 if share else 1)
        return bool(abs(shown - number) <= 0.5 * 10.0**-decimals + 1e-9 * abs(number))
    if cell in ("true", "false"):
        return str(value).lower() == cell  # a CSV spells a boolean as Python does
    return _plain_time(cell) == _plain_time(str(value)) or cell == str(value)


def _moves(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    return _is_number(str(value)) or ISO_TIME.match(str(value)) is not None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _plain_time(text: str) -> str:
    """A timestamp as text without its zone or 'T': the API's ISO and a table's UTC display agree."""
    return text.replace("T", " ").removesuffix("Z").removesuffix("+00:00").removesuffix(".000")
