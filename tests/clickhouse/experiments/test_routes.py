"""The warehouse's experiment results router on a minimal FastAPI app, as the warehouse API mounts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from clickhouse.experiments.analysis import AnalysisConfig
from clickhouse.experiments.routes import results_router
from clickhouse.experiments.warehouse import results_from
from funnelstream.experiments.definitions import Definitions
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_results import conversion, results
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
