"""What a warehouse process watches of its experiments: the alerts of a result, the last results of
each experiment (the ``/metrics`` gauges) and the periodic evaluation of running experiments.

Invariant: the gauges show the last results this process computed (results route or evaluation),
never a figure computed apart; an evaluation that fails leaves the previous results in place.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from clickhouse.experiments.analysis import ExperimentResults
from funnelstream.experiments.definitions import Definitions, Experiment

log = logging.getLogger("funnelstream.experiments.monitor")

Results = Callable[[Experiment, bool], ExperimentResults]
"""(experiment, sequential) → its results."""


def alert_lines(results: ExperimentResults) -> list[str]:
    """Every alert of the results, one line each: the analysis's own alerts, and each harmed
    guardrail and mismatched dimension value the analysis did not already name."""
    lines = list(results.alerts)
    for g in results.guardrails:
        if g.harmed and not any("guardrail" in line and g.metric in line for line in lines):
            lift = "–" if g.relative_lift is None else f"{g.relative_lift:+.1%}"
            p = "–" if g.p_value is None else f"{g.p_value:.2g}"
            lines.append(
                f"guardrail {g.metric} harmed in {g.variant}: lift {lift}, past the tolerated "
                f"{g.threshold:.1%} ({g.harmful}), p = {p}"
            )
    if results.health is not None:
        for d in results.health.dimensions:
            where = f"{d.dimension} = {d.value}"
            if d.alert and not any(where in line for line in lines):
                p = "–" if d.p_value is None else f"{d.p_value:.2g}"
                lines.append(f"sample ratio mismatch in {where} (p = {p})")
    return lines


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class LastResults:
    """The last results computed in this process, per experiment; shared by request threads and
    the evaluation thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, ExperimentResults] = {}

    def record(self, results: ExperimentResults) -> ExperimentResults:
        with self._lock:
            self._results[results.experiment_key] = results
        return results

    def recording(self, compute: Results) -> Results:
        """``compute``, each of its results recorded."""

        def results(experiment: Experiment, sequential: bool) -> ExperimentResults:
            return self.record(compute(experiment, sequential))

        return results

    def snapshot(self) -> list[ExperimentResults]:
        with self._lock:
            return [self._results[key] for key in sorted(self._results)]

    def metrics_lines(self) -> list[str]:
        """The experiment gauges in the Prometheus text format; none before any results."""
        snapshot = self.snapshot()
        if not snapshot:
            return []
        harmed = [
            "# HELP funnelstream_experiment_guardrail_harmed 1 when the variant significantly harms the guardrail",
            "# TYPE funnelstream_experiment_guardrail_harmed gauge",
        ]
        alerts = [
            "# HELP funnelstream_experiment_alerts Alerts of the experiment's last results",
            "# TYPE funnelstream_experiment_alerts gauge",
        ]
        srm = [
            "# HELP funnelstream_experiment_srm_p_value Sample-ratio chi-square p-value of the last results",
            "# TYPE funnelstream_experiment_srm_p_value gauge",
        ]
        for results in snapshot:
            experiment = _label(results.experiment_key)
            for g in results.guardrails:
                labels = f'experiment="{experiment}",metric="{_label(g.metric)}",variant="{_label(g.variant)}"'
                harmed.append(f"funnelstream_experiment_guardrail_harmed{{{labels}}} {int(g.harmed)}")
            alerts.append(f'funnelstream_experiment_alerts{{experiment="{experiment}"}} {len(alert_lines(results))}')
            if results.srm.p_value is not None:
                srm.append(f'funnelstream_experiment_srm_p_value{{experiment="{experiment}"}} {results.srm.p_value!r}')
        return harmed + alerts + srm


class Evaluator:
    """Analyses every running experiment each ``interval_s`` seconds in a thread (0: never), so the
    gauges move without anyone asking for a report; :meth:`stop` lets a running evaluation finish."""

    def __init__(self, interval_s: float, definitions: Callable[[], Definitions], results: Results) -> None:
        self.interval_s = interval_s
        self.definitions = definitions
        self.results = results
        self.stop_requested = threading.Event()
        self.thread: threading.Thread | None = None
        self.evaluations = 0

    def start(self) -> None:
        if self.interval_s <= 0:
            return
        self.thread = threading.Thread(target=self._run, name="experiment-evaluator", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # The first evaluation waits one interval: at start-up the loader has not caught up yet.
        while not self.stop_requested.wait(self.interval_s):
            self.evaluate()

    def evaluate(self, now: datetime | None = None) -> int:
        """Analyse the running experiments once; how many were analysed."""
        try:
            running = self.definitions().running(now)
        except Exception:
            # A definitions file being rewritten must not end the loop; the next round reads it again.
            log.exception("experiment evaluation: cannot read the definitions")
            return 0
        done = 0
        for experiment in running:
            if self.stop_requested.is_set():
                break
            try:
                self.results(experiment, False)
                done += 1
            except Exception:
                # One experiment's failure (a busy pool, a query error) must not stop the others' gauges.
                log.exception("experiment evaluation failed", extra={"experiment": experiment.key})
        self.evaluations += 1
        return done

    def stop(self, timeout_s: float = 30) -> None:
        self.stop_requested.set()
        if self.thread is not None:
            self.thread.join(timeout_s)
