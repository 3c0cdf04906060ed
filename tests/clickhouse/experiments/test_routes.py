"""The warehouse's experiment router (definitions, results, plan) on a minimal FastAPI app, as the
warehouse API mounts it: answers, OpenAPI descriptions, and hostile input never giving a 5xx."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clickhouse.experiments.analysis import AnalysisConfig
from clickhouse.experiments.planning import plan as plan_frames
from clickhouse.experiments.results import MetricPlan, PlanResult
from clickhouse.experiments.routes import results_router
from clickhouse.experiments.service import plan_warehouse
from clickhouse.experiments.warehouse import fetch_frames, results_from
from funnelstream.experiments.definitions import Definitions
from funnelstream.experiments.errors import WarehouseUnavailableError
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_results import conversion, full_results, results
from tests.helpers.experiment_warehouse import experiment_warehouse, load


def test_results_endpoint(chdb_path: Path) -> None:
    events, truth = simulate(JourneySpec(units=3000, task_time_factor=0.7, save_conversion_lift=0.05), 4)
    definitions = Definitions(version=1, experiments=[make_experiment()])
    with experiment_warehouse(chdb_path) as warehouse:
        load(warehouse, [events], "segmentation_tool")
        app = FastAPI()
        app.include_router(
            results_router(lambda: definitions, results_from(warehouse, AnalysisConfig(bootstrap_resamples=100)))
        )
        client = TestClient(app)

        body = client.get("/v1/experiments/segmentation_tool/results").json()
        assert body["mode"] == "fixed_horizon"
        assert sum(e["units"] for e in body["exposures"]) == 3000
        task = body["task_duration"]["mean"]["comparisons"][0]
        assert task["lift_ci_low"] < truth.task_time_relative_lift < task["lift_ci_high"]
        sequential = client.get("/v1/experiments/segmentation_tool/results", params={"sequential": True}).json()
        assert sequential["mode"] == "sequential"
        task = sequential["task_duration"]["mean"]["comparisons"][0]
        assert task["decision"] == "sequential" and task["sequential"]["label"].startswith("sequential")

        missing = client.get("/v1/experiments/nope/results")
        assert missing.status_code == 404 and "segmentation_tool" in missing.json()["detail"]
        listed = client.get("/v1/experiments").json()
        assert listed["experiments"][0]["key"] == "segmentation_tool"


def test_results_json_says_which_numbers_decide_and_each_metrics_role() -> None:
    """The API carries, per comparison, the basis of its deciding numbers, the fixed-horizon numbers
    apart in sequential mode, the raw and adjusted p-values, and each metric's role."""
    definitions = Definitions(version=1, experiments=[make_experiment()])

    def hand_made(experiment: Any, sequential: bool) -> Any:
        return results(
            [
                conversion("conversion_save", (100, 1000), (136, 1000), role="primary", sequential=sequential),
                conversion("conversion_upload", (20, 400), (36, 400), sequential=sequential),
            ],
            sequential=sequential,
        )

    app = FastAPI()
    app.include_router(results_router(lambda: definitions, hand_made))
    client = TestClient(app)

    fixed = client.get("/v1/experiments/segmentation_tool/results").json()
    save, upload = (m["comparisons"][0] for m in fixed["conversion"])
    assert [m["role"] for m in fixed["conversion"]] == ["primary", "secondary"]
    assert save["decision"] == "fixed_horizon" and save["fixed_horizon"] is None and save["sequential"] is None
    assert save["significant"] and save["p_value"] < 0.05 and save["lift_ci_low"] > 0
    # 20/400 vs 36/400: the lift's interval covers zero, so not significant, whatever the difference's test says.
    assert upload["lift_ci_low"] < 0 < upload["lift_ci_high"] and not upload["significant"]
    assert upload["difference_p_value"] < 0.05 and "p_value_adjusted" in upload

    sequential = client.get("/v1/experiments/segmentation_tool/results", params={"sequential": True}).json()
    save = sequential["conversion"][0]["comparisons"][0]
    assert save["decision"] == "sequential"
    assert save["p_value"] == save["sequential"]["p_value"] > 0.05 and not save["significant"]
    assert (save["lift_ci_low"], save["lift_ci_high"]) == (
        save["sequential"]["lift_ci_low"],
        save["sequential"]["lift_ci_high"],
    )
    assert save["fixed_horizon"]["p_value"] < 0.05 and save["fixed_horizon"]["label"].startswith("fixed horizon")


def stub_plan(experiment: Any, mde: float, power: float, days: float) -> PlanResult:
    return PlanResult(
        experiment_key=experiment.key,
        source="recent_traffic",
        mde=mde,
        power=power,
        alpha=0.05,
        days=days,
        units_per_day=250.0,
        weights=experiment.weights,
        metrics=[
            MetricPlan(
                metric="conversion_save",
                baseline=0.1,
                per_unit_standard_deviation=0.3,
                required_units=56_000,
                required_days=224.0,
                reachable_mde=0.2,
            )
        ],
    )


def planned_client(plan: Any = stub_plan) -> TestClient:
    definitions = Definitions(version=1, experiments=[make_experiment()])
    app = FastAPI()
    app.include_router(results_router(lambda: definitions, lambda e, s: full_results(), plan))
    return TestClient(app, raise_server_exceptions=False)


def test_plan_answers_for_the_given_mde_power_and_days() -> None:
    client = planned_client()
    body = client.get("/v1/experiments/segmentation_tool/plan", params={"mde": 0.05}).json()
    assert (body["mde"], body["power"], body["days"]) == (0.05, 0.8, 14.0)
    assert body["metrics"][0]["required_units"] == 56_000 and body["source"] == "recent_traffic"
    body = client.get("/v1/experiments/segmentation_tool/plan", params={"mde": "0.1", "power": 0.9, "days": 28}).json()
    assert (body["mde"], body["power"], body["days"]) == (0.1, 0.9, 28.0)
    missing = client.get("/v1/experiments/nope/plan", params={"mde": 0.05})
    assert missing.status_code == 404 and "segmentation_tool" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "mde"),
        ({"mde": "5%"}, "mde"),
        ({"mde": "abc"}, "mde"),
        ({"mde": 0}, "mde"),
        ({"mde": -0.05}, "mde"),
        ({"mde": 1e-300}, "mde"),
        ({"mde": "nan"}, "mde"),
        ({"mde": "inf"}, "mde"),
        ({"mde": 10}, "mde"),
        ({"mde": 0.05, "power": 1}, "power"),
        ({"mde": 0.05, "power": 0.5}, "power"),
        ({"mde": 0.05, "power": "nan"}, "power"),
        ({"mde": 0.05, "power": "80%"}, "power"),
        ({"mde": 0.05, "days": 0}, "days"),
        ({"mde": 0.05, "days": 1e-300}, "days"),
        ({"mde": 0.05, "days": 366}, "days"),
        ({"mde": 0.05, "days": "-inf"}, "days"),
        ({"mde": 0.05, "days": "two weeks"}, "days"),
    ],
)
def test_plan_refuses_a_bad_parameter_with_422_naming_it(params: dict[str, Any], field: str) -> None:
    response = planned_client().get("/v1/experiments/segmentation_tool/plan", params=params)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]


def test_no_hostile_input_gives_a_server_error() -> None:
    client = planned_client()
    rng = random.Random(7)
    junk = ["", " ", "-0", "1e309", "0x10", "%00", "\u202e", "' OR 1=1 --", "../../etc/passwd", "1" * 5000, "null"]
    junk += ["".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 40))) for _ in range(30)]
    for value in junk:
        for path in ("/v1/experiments/{}/plan", "/v1/experiments/{}/results"):
            response = client.get(path.format("segmentation_tool"), params={"mde": value, "power": value})
            assert response.status_code < 500, (value, response.text)
            response = client.get(path.format(value.replace("/", "%2F") or "x"), params={"mde": 0.05})
            assert response.status_code < 500, (value, response.text)
        response = client.get("/v1/experiments/segmentation_tool/results", params={"sequential": value})
        assert response.status_code < 500, (value, response.text)


def test_an_unreachable_warehouse_is_a_503_with_retry_after() -> None:
    def unreachable(*_: Any) -> Any:
        raise WarehouseUnavailableError("no warehouse here")

    client = planned_client(unreachable)
    response = client.get("/v1/experiments/segmentation_tool/plan", params={"mde": 0.05})
    assert response.status_code == 503 and response.headers["retry-after"] == "2"


NEW_SCHEMAS = (
    "GuardrailCheck",
    "TimelinePoint",
    "MetricTimeline",
    "DimensionSrm",
    "ExposureDay",
    "ContaminatedUnit",
    "Health",
    "Progress",
    "CupedSummary",
    "BayesianComparison",
    "MetricPlan",
    "PlanResult",
)
NEW_FIELDS = {
    "ExperimentResults": (
        "inference_failures",
        "guardrails",
        "timeline",
        "health",
        "progress",
        "cuped_lookback_days",
        "bayesian_prior",
        "alerts",
    ),
    "Comparison": ("cuped", "bayesian"),
}


def test_openapi_describes_every_new_field_and_the_plan_parameters() -> None:
    spec = planned_client().get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    undescribed = [
        f"{name}.{field}"
        for name in NEW_SCHEMAS
        for field, schema in schemas[name]["properties"].items()
        if not schema.get("description")
    ]
    undescribed += [
        f"{name}.{field}"
        for name, names in NEW_FIELDS.items()
        for field in names
        if not schemas[name]["properties"][field].get("description")
    ]
    assert undescribed == []
    results = spec["paths"]["/v1/experiments/{key}/results"]["get"]
    assert results["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("ExperimentResults")
    plan = spec["paths"]["/v1/experiments/{key}/plan"]["get"]
    assert plan["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PlanResult")
    parameters = {p["name"]: p for p in plan["parameters"]}
    assert parameters["mde"]["required"] and not parameters["power"].get("required")
    assert all(parameters[name].get("description") for name in ("mde", "power", "days"))


def test_plan_endpoint_on_a_warehouse_and_hostile_values_of_every_parameter(chdb_path: Path) -> None:
    """The real plan (the experiment's own units) for sane values; for values at and past every
    bound, a 200 or a 422, never a 5xx."""
    events, _ = simulate(JourneySpec(units=2000, task_time_factor=0.8), 6)
    experiment = make_experiment(metrics=["funnel_conversion", "task_duration", "mean_score"])
    definitions = Definitions(version=1, experiments=[experiment])
    with experiment_warehouse(chdb_path) as warehouse:
        load(warehouse, [events], "segmentation_tool")
        config = AnalysisConfig(bootstrap_resamples=0)

        def plan(experiment: Any, mde: float, power: float, days: float) -> Any:
            return plan_warehouse(warehouse, experiment, mde=mde, power=power, days=days, alpha=config.alpha)

        app = FastAPI()
        app.include_router(results_router(lambda: definitions, results_from(warehouse, config), plan))
        client = TestClient(app, raise_server_exceptions=False)

        body = client.get("/v1/experiments/segmentation_tool/plan", params={"mde": 0.05}).json()
        assert body["source"] == "experiment" and body["units_per_day"] > 0
        save = next(m for m in body["metrics"] if m["metric"] == "conversion_save")
        assert save["required_units"] > 0 and save["required_days"] > 0 and 0 < save["reachable_mde"] < 10
        wider = client.get("/v1/experiments/segmentation_tool/plan", params={"mde": 0.2}).json()
        assert (
            next(m for m in wider["metrics"] if m["metric"] == "conversion_save")["required_units"]
            < save["required_units"]
        )

        # The same computation on frames fetched once, so that every combination stays cheap.
        frames = fetch_frames(warehouse, experiment)

        def planned(experiment: Any, mde: float, power: float, days: float) -> Any:
            return plan_frames(frames, experiment, mde=mde, power=power, alpha=0.05, days=days, source="experiment")

        app = FastAPI()
        app.include_router(results_router(lambda: definitions, results_from(warehouse, config), planned))
        client = TestClient(app, raise_server_exceptions=False)
        edges = ["0.001", "0.0009999", "9.999999", "10", "0.5000001", "0.9999999", "1", "365", "365.0001", "1e-320"]
        for mde in edges:
            for power in edges:
                for days in edges:
                    response = client.get(
                        "/v1/experiments/segmentation_tool/plan", params={"mde": mde, "power": power, "days": days}
                    )
                    assert response.status_code in (200, 422), (mde, power, days, response.text)
