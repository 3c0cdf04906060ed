"""The experiment pages' panel routes: each panel's rows are the numbers of
GET /v1/experiments/{key}/results (hand-made full results, and an analysis of a simulated experiment
in the warehouse), one computation serves a page's panels, and bad input is a 404 or a 422."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clickhouse.api import create_app
from clickhouse.experiments.analysis import AnalysisConfig, ExperimentResults
from clickhouse.experiments.routes import results_router
from clickhouse.experiments.warehouse import results_from
from clickhouse.settings import WarehouseSettings
from clickhouse.workspace import experiment_routes
from clickhouse.workspace.experiment_routes import experiment_list_panels, experiment_panels
from funnelstream.experiments.definitions import Definitions, Experiment
from funnelstream.settings import ClickHouseConfig
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_results import full_results
from tests.helpers.experiment_warehouse import experiment_warehouse, load

KEY = "segmentation_tool"
READ_KEY = {"Authorization": "Bearer fs-dev-read-key"}
PANELS = f"/v1/experiments/{KEY}/panels"
COMPARED = ("relative_lift", "lift_ci_low", "lift_ci_high", "p_value", "significant")


def make_client(definitions: Definitions, compute: Any) -> TestClient:
    """An app with the results route and the panel routes over one compute function, as the warehouse app."""
    app = FastAPI()
    app.state.experiment_definitions = lambda: definitions
    app.state.experiment_compute = compute
    app.include_router(results_router(lambda: definitions, compute))
    app.include_router(experiment_routes.router)
    return TestClient(app)


class Counting:
    def __init__(self, results: ExperimentResults) -> None:
        self.results = results
        self.calls = 0

    def __call__(self, experiment: Experiment, sequential: bool) -> ExperimentResults:
        self.calls += 1
        return self.results


@pytest.fixture
def hand_made() -> tuple[TestClient, Counting]:
    definitions = Definitions(version=1, experiments=[make_experiment(), make_experiment(key="later", status="draft")])
    compute = Counting(full_results())
    return make_client(definitions, compute), compute


def panel(client: TestClient, name: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{PANELS}/{name}", params={**params, "chart": 1})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["figure"]["data"] is not None and body["row_count"] == len(body["rows"])
    return body


def assert_panels_equal_results(client: TestClient) -> None:
    results = client.get(f"/v1/experiments/{KEY}/results").json()
    metrics = [*results["conversion"]] + [
        m
        for m in (
            results["task_duration"] and results["task_duration"]["mean"],
            results["score"],
            results["inference_failures"],
        )
        if m
    ]
    expected = {
        (m["name"], c["variant"]): {**{k: c[k] for k in COMPARED}, "p_value_adjusted": c["p_value_adjusted"]}
        for m in metrics
        for c in m["comparisons"]
    }
    rows = panel(client, "metrics")["rows"]
    assert {(r["metric"], r["variant"]): {k: r[k] for k in (*COMPARED, "p_value_adjusted")} for r in rows} == expected

    for series, key in (("cumulative", "cumulative"), ("exposure_day", "by_exposure_day")):
        lift = panel(client, "lift", series=series)["rows"]
        want = [(t["metric"], p["day"], *(p[k] for k in COMPARED)) for t in results["timeline"] for p in t[key]]
        assert [(r["metric"], r["day"], *(r[k] for k in COMPARED)) for r in lift] == want

    guardrails = panel(client, "guardrails")["rows"]
    assert [(r["metric"], r["variant"], r["relative_lift"], r["p_value"], r["harmed"]) for r in guardrails] == [
        (g["metric"], g["variant"], g["relative_lift"], g["p_value"], g["harmed"]) for g in results["guardrails"]
    ]
    srm = panel(client, "srm")["rows"]
    overall = [r for r in srm if r["dimension"] == "all"]
    assert [(r["variant"], r["units"], r["p_value"]) for r in overall] == [
        (e["variant"], e["units"], results["srm"]["p_value"]) for e in results["exposures"]
    ]
    health = results["health"] or {"dimensions": [], "exposures_per_day": [], "contaminated_by_reason": {}}
    assert {(r["dimension"], r["value"], r["variant"], r["units"]) for r in srm if r["dimension"] != "all"} == {
        (d["dimension"], d["value"], arm, units) for d in health["dimensions"] for arm, units in d["units"].items()
    }
    exposures = panel(client, "exposures")["rows"]
    assert sorted((r["date"], r["variant"], r["units"]) for r in exposures) == sorted(
        (day["date"], arm, units) for day in health["exposures_per_day"] for arm, units in day["units"].items()
    )
    contamination = panel(client, "contamination")["rows"]
    assert contamination[-1]["units"] == results["contamination"]["units_in_several_variants"]
    assert {r["reason"]: r["units"] for r in contamination[:-1]} == health["contaminated_by_reason"]


def test_panel_rows_are_the_results_routes_numbers(hand_made: tuple[TestClient, Counting]) -> None:
    client, _ = hand_made
    assert_panels_equal_results(client)
    units = panel(client, "contaminated-units")["rows"]
    # Attacker-controlled ids stay data: JSON text, never markup of ours.
    assert units == [
        {"anonymous_id": "device-<b>&1", "reason": "user", "variants": "control, treatment", "user_ids": "u<1>"}
    ]
    assert any(r["alert"] and r["value"] == "Safari" for r in panel(client, "srm")["rows"])
    one = panel(client, "lift", metric="conversion_save")["rows"]
    assert one and {r["metric"] for r in one} == {"conversion_save"}


def test_a_pages_panels_share_one_computation(hand_made: tuple[TestClient, Counting]) -> None:
    client, compute = hand_made
    for name in ("metrics", "lift", "guardrails", "exposures", "srm", "contamination"):
        panel(client, name)
    assert compute.calls == 1
    panel(client, "metrics", sequential=True)
    assert compute.calls == 2


def test_csv_of_a_panel_is_its_table(hand_made: tuple[TestClient, Counting]) -> None:
    client, _ = hand_made
    rows = panel(client, "metrics")["rows"]
    text = client.get(f"{PANELS}/metrics", params={"format": "csv"}).text
    read = list(csv.DictReader(io.StringIO(text)))
    assert [r["metric"] for r in read] == [r["metric"] for r in rows]
    assert [float(r["relative_lift"]) for r in read] == [r["relative_lift"] for r in rows]


def test_the_list_shows_status_and_health(hand_made: tuple[TestClient, Counting]) -> None:
    client, compute = hand_made
    body = client.get("/v1/experiments/overview", params={"chart": 1}).json()
    running, draft = body["rows"]
    assert (running["key"], running["status"], running["units"]) == (KEY, "running", 2000)
    assert running["srm_p_value"] == compute.results.srm.p_value and running["alerts"] >= 1
    assert "guardrail inference_failure_rate" in running["alert_lines"]
    assert (draft["key"], draft["status"], draft["units"]) == ("later", "draft", None)
    assert body["figure"]["data"]


@pytest.mark.parametrize(
    ("path", "params", "status", "named"),
    [
        ("/v1/experiments/nope/panels/metrics", {}, 404, "segmentation_tool"),
        (f"{PANELS}/nope", {}, 422, "panel"),
        (f"{PANELS}/<script>", {}, 422, "panel"),
        (f"/v1/experiments/{'k' * 201}/panels/metrics", {}, 422, "key"),
        (f"{PANELS}/lift", {"series": "weekly"}, 422, "series"),
        (f"{PANELS}/lift", {"metric": "m" * 201}, 422, "metric"),
        (f"{PANELS}/metrics", {"sequential": "maybe"}, 422, "sequential"),
        (f"{PANELS}/metrics", {"format": "xml"}, 422, "format"),
    ],
)
def test_bad_input_is_a_404_or_a_422_naming_it(
    hand_made: tuple[TestClient, Counting], path: str, params: dict[str, str], status: int, named: str
) -> None:
    client, _ = hand_made
    response = client.get(path, params=params)
    assert response.status_code == status
    assert named in response.text


def test_panel_links() -> None:
    assert [p.route for p in experiment_list_panels()] == ["/v1/experiments/overview"]
    panels = experiment_panels("a/b", ["conversion_save", "task_duration_s"])
    assert {p.id for p in panels} >= {"metrics", "lift-0", "lift-1", "guardrails", "exposures", "srm", "contamination"}
    assert all(p.route.startswith("/v1/experiments/a%2Fb/panels/") for p in panels)
    assert "metric=conversion_save" in panels[1].route
    assert [p.id for p in experiment_panels("x")][1] == "lift"


def test_panels_equal_the_results_of_a_simulated_experiment(shared_chdb_path: Path) -> None:
    events, _ = simulate(JourneySpec(units=1500, task_time_factor=0.7, save_conversion_lift=0.05), 4)
    definitions = Definitions(version=1, experiments=[make_experiment()])
    with experiment_warehouse(shared_chdb_path) as warehouse:
        load(warehouse, [events], KEY)
        client = make_client(definitions, results_from(warehouse, AnalysisConfig(bootstrap_resamples=50)))
        assert_panels_equal_results(client)
        srm = panel(client, "srm")
        assert sum(r["units"] for r in srm["rows"] if r["dimension"] == "all") == 1500
        # The SQL shown runs as is: the experiment's units, which the sample ratio counts.
        assert len(warehouse.query_rows(srm["sql"])) == 1500
        assert len(warehouse.query_rows(panel(client, "contaminated-units")["sql"])) == len(
            panel(client, "contaminated-units")["rows"]
        )


def test_the_warehouse_app_serves_the_panels_from_its_own_results(shared_chdb_path: Path) -> None:
    """On the real app (read key, its definitions file, its results function): the list and a panel
    answer, and an unknown experiment is a 404, on an empty warehouse."""
    with experiment_warehouse(shared_chdb_path) as warehouse:
        app = create_app(
            WarehouseSettings(clickhouse=ClickHouseConfig(database=warehouse.database)),
            warehouse=warehouse,
            run_loader=False,
        )
        if not any(getattr(r, "path", "") == "/v1/experiments/overview" for r in app.routes):
            app.include_router(experiment_routes.router)
        with TestClient(app) as client:
            assert client.get("/v1/experiments/overview").status_code == 401
            listed = client.get("/v1/experiments/overview", headers=READ_KEY)
            assert listed.status_code == 200, listed.text
            keys = [row["key"] for row in listed.json()["rows"]]
            assert keys and keys == [e.key for e in app.state.experiment_definitions().experiments]
            metrics = client.get(f"/v1/experiments/{keys[0]}/panels/metrics", headers=READ_KEY, params={"chart": 1})
            assert metrics.status_code == 200, metrics.text
            assert client.get("/v1/experiments/nope/panels/metrics", headers=READ_KEY).status_code == 404
