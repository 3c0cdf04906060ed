"""One task time everywhere: the same events give the same per-image seconds, the
same mean and the same count through ``/v1/task-times`` (images and summary, overall and by
variant), the ``task_time_summary`` named query ``report funnel`` reads, and the experiment report
(``/v1/experiments/{key}/results`` and the analysis itself), on a real migrated chdb database.

The images are chosen where a looser definition would differ: a save before the inference (the
example: tool click at 20 s, save at 23 s, inference at 25 s, save at 40 s is 20 s, not 3 s), a
save with no inference, an image never saved, one over the cap, one long task that a default
winsorization would have clipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from clickhouse import queries
from clickhouse.api import create_app
from clickhouse.backend import Warehouse
from clickhouse.experiments.analysis import AnalysisConfig, ExperimentResults
from clickhouse.experiments.warehouse import analyze_warehouse
from clickhouse.queries import Breakdown
from clickhouse.settings import WarehouseSettings
from funnelstream.experiments.definitions import Experiment
from funnelstream.settings import ClickHouseConfig
from tests.helpers.experiment_warehouse import experiment_warehouse, load

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, tzinfo=UTC)
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)
# Per image: (device, [(event type, seconds after the device's first tool click)]).
IMAGES: dict[str, tuple[str, list[tuple[str, float]]]] = {
    # The save at 23 s has no inference before it; the task ends at 40 s.
    "issue": ("c1", [("tool_selected", 20), ("image_saved", 23), ("inference_requested", 25), ("image_saved", 40)]),
    "plain-c1": ("c1", [("tool_selected", 0), ("inference_requested", 10), ("image_saved", 45)]),
    "plain-c2": ("c2", [("tool_selected", 0), ("inference_requested", 5), ("image_saved", 70)]),
    "long-c2": ("c2", [("tool_selected", 0), ("inference_requested", 600), ("image_saved", 3000)]),
    "no-inference": ("c2", [("tool_selected", 0), ("image_saved", 12)]),
    "over-cap": ("t1", [("tool_selected", 0), ("inference_requested", 100), ("image_saved", 3700)]),
    "never-saved": ("t1", [("tool_selected", 0), ("inference_requested", 8)]),
    "plain-t1": ("t1", [("tool_selected", 0), ("inference_requested", 4), ("image_saved", 30)]),
    "plain-t2": ("t2", [("tool_selected", 0), ("inference_requested", 4), ("image_saved", 25)]),
    "twice-t2": ("t2", [("tool_selected", 0), ("tool_selected", 9), ("inference_requested", 11), ("image_saved", 36)]),
}
ARMS = {"c1": "control", "c2": "control", "t1": "treatment", "t2": "treatment"}
# The definition, applied by hand: first tool click to the first save after an inference at or
# after it; not counted past 3,600 s.
EXPECTED_SECONDS = {"issue": 20.0, "plain-c1": 45.0, "plain-c2": 70.0, "long-c2": 3000.0, "plain-t1": 30.0}
EXPECTED_SECONDS |= {"plain-t2": 25.0, "twice-t2": 36.0}
NOT_COUNTED = {"no-inference", "over-cap", "never-saved"}


def rows() -> pd.DataFrame:
    out: list[dict[str, Any]] = []
    for index, (device, variant) in enumerate(ARMS.items()):
        exposed = T0 + timedelta(minutes=index)
        out.append(
            {"event_type": "experiment_exposure", "anonymous_id": device, "event_ts": exposed, "variant": variant}
        )
        out[-1]["experiment_key"] = "segmentation_tool"
    for offset, (image, (device, steps)) in enumerate(IMAGES.items()):
        clicked = T0 + timedelta(hours=1 + offset)
        out += [
            {"event_type": kind, "anonymous_id": device, "event_ts": clicked + timedelta(seconds=at), "input_id": image}
            for kind, at in steps
        ]
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Warehouse, TestClient]]:
    path = Path(tmp_path_factory.mktemp("agreement")) / "chdb"
    with experiment_warehouse(path) as warehouse:
        load(warehouse, [rows()], "segmentation_tool")
        settings = WarehouseSettings(clickhouse=ClickHouseConfig(chdb_path=path, database=warehouse.database))
        app = create_app(settings, warehouse=warehouse, run_loader=False)
        with TestClient(app, headers=settings.read_headers) as client:
            yield warehouse, client


def window() -> dict[str, str]:
    return {"from": START.isoformat(), "to": END.isoformat()}


def by_arm(images: dict[str, float]) -> dict[str, list[float]]:
    arms: dict[str, list[float]] = {"control": [], "treatment": []}
    for image, seconds in images.items():
        arms[ARMS[IMAGES[image][0]]].append(seconds)
    return arms


def test_per_image_seconds_follow_the_one_definition(
    loaded: tuple[Warehouse, TestClient], experiment: Experiment
) -> None:
    _, client = loaded
    response = client.get("/v1/task-times", params={**window(), "view": "images"})
    assert response.status_code == 200, response.text
    seconds = sorted(row["diff_second"] for row in response.json()["rows"] if row["diff_second"] is not None)
    assert seconds == sorted(EXPECTED_SECONDS.values())
    assert len(response.json()["rows"]) == len(IMAGES)


def summary(client: TestClient, breakdown: str) -> dict[str, dict[str, Any]]:
    params = {**window(), "view": "summary", "breakdown": breakdown, "experiment": "segmentation_tool"}
    response = client.get("/v1/task-times", params=params)
    assert response.status_code == 200, response.text
    return {row["breakdown"]: row for row in response.json()["rows"]}


def experiment_report(client: TestClient) -> ExperimentResults:
    response = client.get("/v1/experiments/segmentation_tool/results")
    assert response.status_code == 200, response.text
    return ExperimentResults.model_validate(response.json())


def test_summary_report_funnel_query_and_experiment_report_agree(
    loaded: tuple[Warehouse, TestClient], experiment: Experiment
) -> None:
    warehouse, client = loaded
    expected = by_arm(EXPECTED_SECONDS)
    api = summary(client, "variant")
    named = {
        row["breakdown"]: row
        for row in queries.task_time_summary(warehouse, START, END, Breakdown.VARIANT, "segmentation_tool")
    }
    analysed = analyze_warehouse(warehouse, experiment, AnalysisConfig(bootstrap_resamples=0))
    served = experiment_report(client)
    for results in (analysed, served):
        assert results.task_duration is not None
        arms = {arm.variant: arm for arm in results.task_duration.mean.arms}
        for variant, seconds in expected.items():
            mean = sum(seconds) / len(seconds)
            # Same count: images with a counted task time; same mean: their plain mean.
            assert arms[variant].denominator == len(seconds) == api[variant]["saved_images"]
            assert arms[variant].numerator == pytest.approx(sum(seconds))
            assert arms[variant].value == pytest.approx(mean)
            assert api[variant]["mean_s"] == pytest.approx(mean, abs=5e-4) == named[variant]["mean_s"]
            assert results.task_duration.images[variant] == len(seconds)
            assert results.task_duration.images_started[variant] == api[variant]["images"]
        assert results.task_duration.winsor_cap_s is None

    overall = summary(client, "none")["all"]
    counted = list(EXPECTED_SECONDS.values())
    assert overall["saved_images"] == len(counted) and overall["images"] == len(IMAGES)
    assert overall["mean_s"] == pytest.approx(sum(counted) / len(counted), abs=5e-4)
