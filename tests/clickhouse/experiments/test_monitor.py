"""The experiment gauges of the warehouse API's /metrics: from the last results computed in the
process, label values escaped; the periodic evaluation of running experiments and its shutdown."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from clickhouse.api import create_app
from clickhouse.experiments.analysis import ExperimentResults
from clickhouse.experiments.monitor import Evaluator, LastResults, alert_lines
from clickhouse.settings import WarehouseSettings
from funnelstream.experiments.definitions import Definitions
from funnelstream.experiments.settings import DEFAULT_DEFINITIONS
from ops.journeys import JourneySpec, simulate
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_results import full_results
from tests.helpers.experiment_warehouse import experiment_warehouse, load


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, parsed by Prometheus' own parser: (name, sorted labels) → value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_gauges_from_the_last_results() -> None:
    last = LastResults()
    assert last.metrics_lines() == []
    last.record(full_results())
    parsed = samples("\n".join(last.metrics_lines()) + "\n")
    harmed = "funnelstream_experiment_guardrail_harmed"
    labels = (("experiment", "segmentation_tool"), ("metric", "inference_failure_rate"), ("variant", "treatment"))
    assert parsed[(harmed, labels)] == 1
    labels = (("experiment", "segmentation_tool"), ("metric", "conversion_save"), ("variant", "treatment"))
    assert parsed[(harmed, labels)] == 0
    # The SRM alert of the analysis and the harmed guardrail it did not name: two alerts.
    assert len(alert_lines(full_results())) == 2
    assert parsed[("funnelstream_experiment_alerts", (("experiment", "segmentation_tool"),))] == 2
    assert parsed[("funnelstream_experiment_srm_p_value", (("experiment", "segmentation_tool"),))] == 1.0

    # A later computation replaces the earlier one; the Safari mismatch of its health is still an
    # alert when the analysis's own list leaves it out.
    last.record(full_results(harmed=False).model_copy(update={"alerts": []}))
    parsed = samples("\n".join(last.metrics_lines()) + "\n")
    assert parsed[("funnelstream_experiment_alerts", (("experiment", "segmentation_tool"),))] == 1
    labels = (("experiment", "segmentation_tool"), ("metric", "inference_failure_rate"), ("variant", "treatment"))
    assert parsed[(harmed, labels)] == 0


def test_label_values_are_escaped() -> None:
    last = LastResults()
    key = 'a"b\\c\nd'
    guardrails = [g.model_copy(update={"variant": 'v"1'}) for g in full_results().guardrails]
    last.record(full_results().model_copy(update={"experiment_key": key, "guardrails": guardrails}))
    text = "\n".join(last.metrics_lines()) + "\n"
    assert 'experiment="a\\"b\\\\c\\nd"' in text and 'variant="v\\"1"' in text
    parsed = samples(text)
    assert parsed[("funnelstream_experiment_alerts", (("experiment", key),))] == 2
    assert all(re.fullmatch(r"(#.*|funnelstream_\w+\{[^\n]*\} \S+)", line) for line in text.splitlines())


def test_an_unknown_srm_p_value_leaves_the_gauge_out() -> None:
    last = LastResults()
    results = full_results()
    last.record(results.model_copy(update={"srm": results.srm.model_copy(update={"p_value": None, "chi2": None})}))
    assert "funnelstream_experiment_srm_p_value{" not in "\n".join(last.metrics_lines())


def definitions_with(*keys: str) -> Definitions:
    now = datetime.now(UTC)
    running = [make_experiment(key=key, start=now - timedelta(days=1)) for key in keys]
    return Definitions(version=1, experiments=running)


def test_the_evaluation_analyses_every_running_experiment_and_survives_a_failure() -> None:
    last = LastResults()

    def compute(experiment: Any, sequential: bool) -> ExperimentResults:
        if experiment.key == "broken":
            raise RuntimeError("a query failed")
        return full_results().model_copy(update={"experiment_key": experiment.key})

    evaluator = Evaluator(300, lambda: definitions_with("first", "broken", "second"), last.recording(compute))
    assert evaluator.evaluate() == 2
    assert [r.experiment_key for r in last.snapshot()] == ["first", "second"]

    def unreadable() -> Definitions:
        raise OSError("definitions being rewritten")

    assert Evaluator(300, unreadable, last.recording(compute)).evaluate() == 0


def test_the_evaluation_runs_every_interval_and_is_drained_on_stop() -> None:
    evaluated = threading.Event()
    finished = threading.Event()

    def compute(experiment: Any, sequential: bool) -> ExperimentResults:
        evaluated.set()
        finished.wait(5)  # a long analysis still in flight when stop() comes
        return full_results()

    last = LastResults()
    evaluator = Evaluator(0.01, lambda: definitions_with("first"), last.recording(compute))
    evaluator.start()
    assert evaluated.wait(5)
    threading.Timer(0.2, finished.set).start()
    evaluator.stop(timeout_s=10)
    assert evaluator.thread is not None and not evaluator.thread.is_alive()
    assert [r.experiment_key for r in last.snapshot()] == ["segmentation_tool"]


def test_an_interval_of_zero_turns_the_evaluation_off() -> None:
    evaluator = Evaluator(0, lambda: definitions_with("first"), lambda e, s: full_results())
    evaluator.start()
    assert evaluator.thread is None
    evaluator.stop()


@pytest.fixture
def served(chdb_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[float], TestClient]]:
    """The warehouse API over a simulated run of the shipped experiment, evaluating every ``interval`` s."""
    monkeypatch.setenv("FS_EXPERIMENTS__DEFINITIONS_PATH", str(DEFAULT_DEFINITIONS))
    monkeypatch.setenv("FS_EXPERIMENTS__BOOTSTRAP_RESAMPLES", "0")
    # Contaminated units, inference failures doubled in treatment (a harmed guardrail) and a client
    # that loses half of Safari's treatment exposures: three kinds of alert.
    spec = JourneySpec(
        units=3000,
        contaminated_share=0.03,
        completions=True,
        failure_rate=0.05,
        failure_rate_lift=0.05,
        srm_in=("browser", "Safari", 0.5),
    )
    events, _ = simulate(spec, 5)
    with ExitStack() as stack:
        warehouse = stack.enter_context(experiment_warehouse(chdb_path))
        load(warehouse, [events], "segmentation_tool")

        def client(interval_s: float) -> TestClient:
            monkeypatch.setenv("FS_EXPERIMENTS__EVALUATE_INTERVAL_S", str(interval_s))
            settings = WarehouseSettings()
            app = create_app(settings, warehouse=warehouse, run_loader=False)
            return stack.enter_context(TestClient(app, headers=settings.read_headers))

        yield client


def test_the_warehouse_api_serves_the_gauges_of_the_results_it_computed(served: Callable[[float], TestClient]) -> None:
    client = served(0)
    assert "funnelstream_experiment_" not in client.get("/metrics").text
    body = client.get("/v1/experiments/segmentation_tool/results").json()
    results = ExperimentResults.model_validate(body)
    parsed = samples(client.get("/metrics").text)
    key = (("experiment", "segmentation_tool"),)
    alerts = alert_lines(results)
    assert parsed[("funnelstream_experiment_alerts", key)] == len(alerts) >= 3
    assert any("more than one variant" in a for a in alerts) and any("browser = Safari" in a for a in alerts)
    assert parsed[("funnelstream_experiment_srm_p_value", key)] == pytest.approx(results.srm.p_value)
    harmed = {
        (labels[1][1], labels[2][1]): value
        for (name, labels), value in parsed.items()
        if name == "funnelstream_experiment_guardrail_harmed"
    }
    assert harmed == {(g.metric, g.variant): int(g.harmed) for g in results.guardrails}
    assert len(harmed) == 3  # the shipped experiment's three guardrails, against its one variant
    assert harmed[("inference_failure_rate", "treatment")] == 1


def test_the_warehouse_api_evaluates_running_experiments_on_its_own(served: Callable[[float], TestClient]) -> None:
    client = served(0.2)
    deadline = time.monotonic() + 60
    while "funnelstream_experiment_alerts{" not in (text := client.get("/metrics").text):
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert 'funnelstream_experiment_alerts{experiment="segmentation_tool"}' in text
