"""The workspace's pages render their controls and panel lists, and serve the files they load."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clickhouse.api import create_app
from clickhouse.backend import Warehouse
from clickhouse.cli import warehouse_app
from clickhouse.loader import Message, decode_events
from clickhouse.settings import DEV_READ_KEY, WarehouseSettings
from clickhouse.workspace import views
from clickhouse.workspace.experiment_routes import experiment_list_panels
from clickhouse.workspace.pages import static_file
from clickhouse.workspace.panels import PanelLink, route
from clickhouse.workspace.pipeline import pipeline_panels
from clickhouse.workspace.task_time_routes import task_time_panels
from funnelstream.errors import FieldError
from funnelstream.experiments.definitions import Definitions, Experiment, Status, Variant
from funnelstream.experiments.errors import DefinitionError
from ops.journeys import clickstream
from tests.helpers.warehouse_backends import drop_and_close, open_test_warehouse

KEY = {"Authorization": f"Bearer {DEV_READ_KEY}"}


class Form(HTMLParser):
    """The page's form fields: name -> selected/typed values, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[str]] = {}
        self.select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "select":
            self.select = found["name"] or ""
            self.values.setdefault(self.select, [])
        elif tag == "option" and self.select is not None and "selected" in found:
            self.values[self.select].append(found.get("value") or "")
        elif tag == "input" and found.get("name") and (found.get("type") != "checkbox" or "checked" in found):
            self.values.setdefault(found["name"] or "", []).append(found.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None


@pytest.fixture(scope="module")
def client() -> TestClient:
    # No lifespan: a page queries nothing, its panels do, from the browser.
    return TestClient(create_app(WarehouseSettings(), run_loader=False), headers=KEY, follow_redirects=False)


def form_of(html: str) -> dict[str, list[str]]:
    parser = Form()
    parser.feed(html)
    return parser.values


def panels_of(html: str) -> list[dict[str, str]]:
    found = re.search(r'<script type="application/json" id="panels">(.*?)</script>', html, re.S)
    assert found
    panels: list[dict[str, str]] = json.loads(found.group(1))
    return panels


def test_the_funnel_page_lists_its_panels_and_holds_the_state_in_its_form(client: TestClient) -> None:
    state = {
        "steps": "image_uploaded,tool_selected,image_saved",
        "unit": "anonymous_id",
        "mode": "strict",
        "tool": "brush",
        "size": "large",
        "step": "3",
        "interval": "hour",
        "exclude": "score_submitted",
        "live": "1",
    }
    response = client.get("/ui/funnel", params=state)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    assert panels_of(response.text) == [panel.as_json() for panel in views.funnel_panels(state)]
    assert [panel["id"] for panel in panels_of(response.text)][:1] == ["steps"]
    form = form_of(response.text)
    assert form["steps"] == ["image_uploaded", "tool_selected", "image_saved"]
    for name in ("unit", "mode", "tool", "size", "step", "interval", "exclude", "live"):
        assert form[name] == [state[name]], name
    assert {name for name, _ in views.FILTERS} <= set(form)
    assert {"from", "to", "window", "breakdown", "experiment", "min_count"} <= set(form)
    assert 'data-panel="correlation"' in response.text and "data as of" in response.text


def test_the_funnel_page_defaults_to_the_standard_steps(client: TestClient) -> None:
    form = form_of(client.get("/ui/funnel").text)
    assert form["steps"] == ["image_uploaded", "tool_selected", "inference_requested", "image_saved", "score_submitted"]
    assert form["unit"] == ["input_id"] and form["step"] == ["2"] and "live" not in form


def test_an_unknown_value_selects_nothing_and_is_escaped_in_text_fields(client: TestClient) -> None:
    response = client.get("/ui/funnel", params={"unit": "<b>x</b>", "source": "<b>x</b>", "steps": "nope,<i>"})
    form = form_of(response.text)
    assert form["unit"] == [] and form["source"] == ["<b>x</b>"]
    assert "<b>" not in response.text and "<i>" not in response.text


@pytest.mark.parametrize(
    ("path", "title", "current"),
    [
        ("/ui/task-time", "Task time", "/ui/task-time"),
        ("/ui/experiments", "Experiments", "/ui/experiments"),
        ("/ui/experiments/segmentation_tool", "Experiment segmentation_tool", "/ui/experiments"),
    ],
)
def test_each_page_has_the_navigation_banner_and_range(client: TestClient, path: str, title: str, current: str) -> None:
    response = client.get(path, params={"from": "2026-01-01T00:00"})
    assert response.status_code == 200
    assert f"<h1>{title}</h1>" in response.text
    assert f'<a href="{current}" aria-current="page">' in response.text
    assert form_of(response.text)["from"] == ["2026-01-01T00:00"]
    assert isinstance(panels_of(response.text), list)


def test_the_task_time_and_experiment_pages_list_their_owners_panels(client: TestClient) -> None:
    state = {"input_id": "8d3c4f1e-0000-4000-8000-000000000001", "experiment": "segmentation_tool"}
    response = client.get("/ui/task-time", params=state)
    assert panels_of(response.text) == [panel.as_json() for panel in task_time_panels(state)]
    assert form_of(response.text)["input_id"] == [state["input_id"]]
    listed = client.get("/ui/experiments")
    assert panels_of(listed.text) == [panel.as_json() for panel in experiment_list_panels()]
    page = client.get("/ui/experiments/segmentation_tool")
    assert [panel["id"] for panel in panels_of(page.text)][:2] == ["metrics", "lift-0"]
    assert client.get("/ui/experiments/no_such_experiment").status_code == 404


def test_the_pipeline_page_lists_its_panels_and_follows_now(client: TestClient) -> None:
    response = client.get("/ui/pipeline", params={"live": "1"})
    assert panels_of(response.text) == [panel.as_json() for panel in pipeline_panels()]
    assert '<a href="/ui/pipeline" aria-current="page">' in response.text
    assert form_of(response.text) == {"live": ["1"]}


def test_ui_goes_to_the_funnel(client: TestClient) -> None:
    response = client.get("/ui")
    assert response.status_code == 303 and response.headers["location"] == "/ui/funnel"


@pytest.mark.parametrize("name", ["plotly.min.js", "workspace.js", "workspace.css"])
def test_static_files_are_served_for_a_long_cache_under_their_version(client: TestClient, name: str) -> None:
    response = client.get(f"/ui/static/{name}")
    assert response.status_code == 200 and "immutable" in response.headers["cache-control"]
    assert response.content == static_file(name).body
    assert f"/ui/static/{name}?v={static_file(name).version}" in client.get("/ui/funnel").text


def test_plotly_is_the_installed_library_and_nothing_else_is_served(client: TestClient) -> None:
    assert b"plotly" in static_file("plotly.min.js").body[:2000].lower()
    for name in ("../pages.py", "answers.py", "plotly.js", "%2e%2e%2fpages.py"):
        assert client.get(f"/ui/static/{name}").status_code == 404


def test_a_panel_route_carries_its_fixed_parameters() -> None:
    assert route("/v1/funnel/dropped", step=3, limit="") == "/v1/funnel/dropped?step=3"
    assert route("/v1/x", key="a b&c") == "/v1/x?key=a+b%26c"
    assert PanelLink("a", "A", "/v1/a").as_json() == {"id": "a", "title": "A", "route": "/v1/a"}


@pytest.mark.parametrize(("host", "shown"), [("0.0.0.0", "127.0.0.1"), ("10.1.2.3", "10.1.2.3"), ("::1", "[::1]")])
def test_warehouse_serve_prints_the_workspace_url(monkeypatch: pytest.MonkeyPatch, host: str, shown: str) -> None:
    served: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    result = CliRunner().invoke(warehouse_app, ["serve", "--host", host, "--port", "8123", "--no-loader"])
    assert result.exit_code == 0, result.output
    assert f"workspace: http://{shown}:8123/ui" in result.output
    assert served["host"] == host and served["port"] == 8123


def test_the_experiments_page_links_each_definition_and_shows_its_name_as_text() -> None:
    app = create_app(WarehouseSettings(), run_loader=False)
    hostile = Experiment(
        key="new_tool", name="<script>alert(1)</script>", status=Status.RUNNING,
        variants=[Variant(key="control", weight=0.5), Variant(key="treatment", weight=0.5)],
    )  # fmt: skip
    app.state.experiment_definitions = lambda: Definitions(version=1, experiments=[hostile])
    response = TestClient(app, headers=KEY).get("/ui/experiments")
    assert '<a href="/ui/experiments/new_tool">new_tool</a>' in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text and "<script>alert" not in response.text


def test_the_experiments_page_says_when_the_definitions_cannot_be_read() -> None:
    app = create_app(WarehouseSettings(), run_loader=False)

    def unreadable() -> Definitions:
        raise DefinitionError("/no/such/file.yaml", [FieldError("file", "cannot read: No such file")])

    app.state.experiment_definitions = unreadable
    response = TestClient(app, headers=KEY).get("/ui/experiments")
    assert (
        response.status_code == 200 and "cannot be read" in response.text and "No experiments defined" in response.text
    )


@pytest.fixture(scope="module")
def loaded(shared_chdb_path: Path) -> Iterator[tuple[TestClient, Warehouse]]:
    warehouse, config = open_test_warehouse("chdb", shared_chdb_path)
    data = clickstream(images=120, devices=30, seed=3)
    messages = [Message("e", 0, i, None, e.model_dump_json().encode()) for i, e in enumerate(data.deliveries)]
    warehouse.insert_arrow("events", decode_events(messages)[0])
    settings = WarehouseSettings(clickhouse=config)
    with TestClient(create_app(settings, warehouse=warehouse, run_loader=False), headers=settings.read_headers) as c:
        yield c, warehouse
    drop_and_close(warehouse)


def test_every_funnel_panel_answers_its_rows_with_the_sql_that_ran_and_a_figure(
    loaded: tuple[TestClient, Warehouse],
) -> None:
    client, warehouse = loaded
    state = {"from": "2020-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z", "step": "4", "min_count": "1"}
    page = client.get("/ui/funnel", params=state)
    for panel in panels_of(page.text):
        answer = client.get(panel["route"], params={**state, "chart": "1"})
        assert answer.status_code == 200, (panel, answer.text)
        body = answer.json()
        assert body["rows"], panel
        assert body["sql"] and ("figure" in body or panel["id"] == "dropped"), panel
        if panel["id"] in ("steps", "time-to-convert"):
            # The SQL shown runs as is and gives the very rows the panel draws.
            assert warehouse.query_rows(body["sql"]) == client.get(panel["route"], params=state).json()["rows"]
        csv = client.get(panel["route"], params={**state, "format": "csv"})
        assert csv.headers["content-type"].startswith("text/csv")
        assert len(csv.text.strip().splitlines()) == len(body["rows"]) + 1, panel
