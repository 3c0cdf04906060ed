"""The workspace's pages as a browser sees them: Debian's Chromium through Playwright, the login form,
and each panel's drawn chart and table read back from the page.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
DRAWN_TIMEOUT_MS = 60_000


@contextmanager
def chromium() -> Iterator[Any]:
    # Imported here so that collecting the suite never needs Playwright.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Any, base_url: str, read_key: str) -> None:
    """Through the login form, as an analyst does: the read key goes into an HttpOnly cookie."""
    page.goto(f"{base_url}/ui/login")
    page.fill("input[name=key]", read_key)
    with page.expect_navigation():
        page.click("form [type=submit]")
    assert "/ui/login" not in page.url, page.url


def panels(page: Any) -> list[dict[str, str]]:
    """The page's panels ``{id, title, route}``, from the JSON the page carries."""
    found: list[dict[str, str]] = page.evaluate("JSON.parse(document.getElementById('panels').textContent)")
    return found


def wait_drawn(page: Any, timeout_ms: int = DRAWN_TIMEOUT_MS) -> list[dict[str, str]]:
    """Until every panel is drawn (its marker, and a Plotly chart with its svg unless its answer has no
    figure: a table alone); returns the panels.

    A panel that could not draw fails at once, with what it says."""
    shown = panels(page)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-panel]')].every((p) => p.dataset.state !== 'loading')",
        timeout=timeout_ms,
    )
    states: list[dict[str, Any]] = page.evaluate(
        """() => [...document.querySelectorAll('[data-panel]')].map((p) => ({
               id: p.dataset.panel, state: p.dataset.state, status: p.querySelector('.status').textContent,
               chart: p.querySelector('.js-plotly-plot svg') !== null || p.querySelector('.figure').hidden}))"""
    )
    broken = [s for s in states if s["state"] != "drawn" or not s["chart"]]
    assert not broken, f"{page.url}: panels not drawn: {broken}"
    assert [s["id"] for s in states] == [p["id"] for p in shown], (states, shown)
    return shown


def panel_table(page: Any, panel_id: str) -> dict[str, Any]:
    """A panel's table as ``{"headers": [...], "rows": [[cell text, ...], ...]}``."""
    table: dict[str, Any] = page.evaluate(
        """(id) => { const table = document.querySelector(`[data-panel='${id}'] table`);
                     if (!table) return {headers: [], rows: []};
                     const text = (cells) => Array.from(cells, (cell) => cell.textContent.trim());
                     return {headers: text(table.querySelectorAll('thead th')),
                             rows: Array.from(table.querySelectorAll('tbody tr'), (row) => text(row.cells))}; }""",
        panel_id,
    )
    return table


def page_state(url: str) -> list[tuple[str, str]]:
    """The state a page sends its routes, as workspace.js reads it from the URL: empty fields and the
    answer's own parameters (chart, format) left out, the steps one comma-separated list."""
    state: list[tuple[str, str]] = []
    steps: list[str] = []
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == "steps":
            steps += [step.strip() for step in value.split(",") if step.strip()]
        elif value and name not in ("chart", "format"):
            state.append((name, value))
    return [*state, ("steps", ",".join(steps))] if steps else state


def panel_request(route: str, page_url: str) -> tuple[str, list[tuple[str, str]]]:
    """The path and parameters a panel fetches on that page: its route's own fixed ones win."""
    path, _, fixed = route.partition("?")
    own = parse_qsl(fixed, keep_blank_values=True)
    names = {name for name, _ in own}
    return path, [*own, *((name, value) for name, value in page_state(page_url) if name not in names)]
