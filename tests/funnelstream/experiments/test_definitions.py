from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from funnelstream.experiments.definitions import (
    DefinitionsWatcher,
    Status,
    check_transition,
    load_definitions,
    parse_definitions,
)
from funnelstream.experiments.errors import DefinitionError, UnknownExperimentError
from funnelstream.experiments.settings import DEFAULT_DEFINITIONS

BASE = """
version: {version}
experiments:
  - key: seg
    status: running
    variants:
      - {{key: control, weight: {w0}}}
      - {{key: treatment, weight: {w1}}}
    coverage: {coverage}
    phase: {phase}
{extra}
"""


def text(
    version: int = 1, w0: float = 0.5, w1: float = 0.5, coverage: float = 1.0, phase: int = 1, extra: str = ""
) -> str:
    return BASE.format(version=version, w0=w0, w1=w1, coverage=coverage, phase=phase, extra=extra)


def test_the_shipped_definitions_file_is_valid() -> None:
    definitions = load_definitions(DEFAULT_DEFINITIONS)
    experiment = definitions.get("segmentation_tool")
    assert experiment.status is Status.RUNNING
    assert experiment.control == "control"
    assert experiment.hash_version == 2


def fields_of(exc: pytest.ExceptionInfo[DefinitionError]) -> set[str]:
    return {error.field for error in exc.value.errors}


def test_errors_name_the_experiment_and_field() -> None:
    with pytest.raises(DefinitionError) as exc:
        parse_definitions(text(w0=0.7, w1=0.7))
    assert fields_of(exc) == {"experiments.seg.variants"}
    assert "sum to 1" in str(exc.value)

    with pytest.raises(DefinitionError) as exc:
        parse_definitions(text(coverage=1.5))
    assert fields_of(exc) == {"experiments.seg.coverage"}

    with pytest.raises(DefinitionError) as exc:
        parse_definitions(text(extra="    forced_variants: {qa-1: nope}"))
    assert "forced_variants" in str(exc.value) and "nope" in str(exc.value)

    with pytest.raises(DefinitionError) as exc:
        parse_definitions(text(extra="    hash_version: 3"))
    assert fields_of(exc) == {"experiments.seg.hash_version"}

    with pytest.raises(DefinitionError) as exc:
        parse_definitions("version: [unclosed")
    assert fields_of(exc) == {"file"}


def test_running_experiments_in_one_namespace_must_not_overlap() -> None:
    doc = """
version: 1
experiments:
  - {key: a, status: running, namespace: {name: editor, start: 0, end: 0.6},
     variants: [{key: c, weight: 0.5}, {key: t, weight: 0.5}]}
  - {key: b, status: running, namespace: {name: editor, start: 0.5, end: 1},
     variants: [{key: c, weight: 0.5}, {key: t, weight: 0.5}]}
"""
    with pytest.raises(DefinitionError, match="overlap in namespace editor"):
        parse_definitions(doc)
    parse_definitions(doc.replace("start: 0.5", "start: 0.6"))


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(UnknownExperimentError, match="defined: seg"):
        parse_definitions(text()).get("other")


def test_changing_weights_requires_a_new_phase() -> None:
    old = parse_definitions(text())
    with pytest.raises(DefinitionError) as exc:
        check_transition(old, parse_definitions(text(version=2, w0=0.3, w1=0.7)))
    assert fields_of(exc) == {"experiments.seg.phase"}

    new_phase = text(version=2, w0=0.3, w1=0.7, phase=2, extra="    phase_start: 2026-11-20T00:00:00Z")
    check_transition(old, parse_definitions(new_phase))
    # Coverage may change inside a phase: range starts stay put, so no unit changes arm.
    check_transition(old, parse_definitions(text(version=2, coverage=0.5)))


def test_version_must_increase() -> None:
    old = parse_definitions(text(version=3))
    with pytest.raises(DefinitionError) as exc:
        check_transition(old, parse_definitions(text(version=3, coverage=0.5)))
    assert fields_of(exc) == {"version"}


def test_watcher_applies_a_new_version_without_restart_and_refuses_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(textwrap.dedent(text(coverage=0.5)))
    watcher = DefinitionsWatcher(path)
    assert watcher.current.get("seg").coverage == 0.5
    assert watcher.poll() is False  # unchanged

    path.write_text(text(version=2, coverage=1.0))
    assert watcher.poll() is True
    assert watcher.current.version == 2 and watcher.current.get("seg").coverage == 1.0

    # Weights changed inside the phase: refused, version 2 stays in force.
    path.write_text(text(version=3, w0=0.2, w1=0.8))
    assert watcher.poll() is False
    assert watcher.current.version == 2
    assert watcher.last_error is not None and watcher.last_error.errors[0].field == "experiments.seg.phase"

    path.write_text("version: 4\nexperiments: nope\n")
    assert watcher.poll() is False
    assert watcher.current.version == 2

    path.write_text(text(version=5, w0=0.2, w1=0.8, phase=2, extra="    phase_start: 2026-11-20T00:00:00Z"))
    assert watcher.poll() is True
    assert watcher.current.get("seg").weights == [0.2, 0.8] and watcher.last_error is None


def test_watcher_run_loop_picks_up_changes(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "experiments.yaml"
    path.write_text(text())
    watcher = DefinitionsWatcher(path)

    async def scenario() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(0.01, stop))
        await asyncio.sleep(0.02)
        path.write_text(text(version=2, coverage=0.3))
        for _ in range(200):
            if watcher.current.version == 2:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task
        return watcher.current.version

    assert asyncio.run(scenario()) == 2


def test_an_experiment_declares_one_primary_metric_and_optional_guardrails() -> None:
    every = parse_definitions(text()).get("seg")
    assert every.primary_metric == "task_duration_s" and every.guardrail_metrics == [] and every.correction == "holm"
    assert every.metric_role("task_duration_s") == "primary" and every.metric_role("conversion_save") == "secondary"
    conversion_only = parse_definitions(text(extra="    metrics: [funnel_conversion]")).get("seg")
    assert conversion_only.primary_metric == "conversion_save"

    declared = parse_definitions(
        text(
            extra="    primary_metric: conversion_save\n"
            "    guardrail_metrics: [mean_score, task_duration_s]\n"
            "    correction: benjamini_hochberg"
        )
    ).get("seg")
    assert declared.primary_metric == "conversion_save" and declared.correction == "benjamini_hochberg"
    assert [declared.metric_role(m) for m in ("conversion_save", "mean_score", "conversion_tool")] == [
        "primary",
        "guardrail",
        "secondary",
    ]


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ("    primary_metric: revenue", "experiments.seg.primary_metric", "conversion_save"),
        (
            "    metrics: [funnel_conversion]\n    primary_metric: task_duration_s",
            "experiments.seg.primary_metric",
            "task_duration",
        ),
        ("    guardrail_metrics: [mean_score, nope]", "experiments.seg.guardrail_metrics.1.metric", "mean_score"),
        ("    guardrail_metrics: [task_duration_s]", "experiments.seg.guardrail_metrics", "primary"),
        ("    guardrail_metrics: [mean_score, mean_score]", "experiments.seg.guardrail_metrics", "twice"),
        (
            "    metrics: [funnel_conversion, task_duration]\n    guardrail_metrics: [mean_score]",
            "experiments.seg.guardrail_metrics",
            "mean_score",
        ),
        ("    correction: bonferroni", "experiments.seg.correction", "holm"),
    ],
)
def test_metric_declarations_are_validated_by_field(extra: str, field: str, message: str) -> None:
    with pytest.raises(DefinitionError) as exc:
        parse_definitions(text(extra=extra))
    assert fields_of(exc) == {field}
    assert message in str(exc.value)


def test_the_metric_plan_does_not_change_inside_a_running_phase() -> None:
    old = parse_definitions(text())
    for extra in (
        "    primary_metric: conversion_save",
        "    guardrail_metrics: [mean_score]",
        "    correction: benjamini_hochberg",
    ):
        with pytest.raises(DefinitionError) as exc:
            check_transition(old, parse_definitions(text(version=2, extra=extra)))
        assert fields_of(exc) == {"experiments.seg.phase"}
        assert "primary_metric" in str(exc.value)
        check_transition(
            old, parse_definitions(text(version=2, phase=2, extra=extra + "\n    phase_start: 2026-11-20T00:00:00Z"))
        )
    # A draft is still being planned: its metrics may change.
    draft = parse_definitions(text().replace("status: running", "status: draft"))
    check_transition(draft, parse_definitions(text(version=2, extra="    primary_metric: conversion_save")))


def test_the_shipped_definitions_declare_the_primary_metric() -> None:
    experiment = load_definitions(DEFAULT_DEFINITIONS).get("segmentation_tool")
    assert experiment.primary_metric == "task_duration_s"
    assert experiment.guardrail_names == ["conversion_save", "mean_score", "inference_failure_rate"]
    assert experiment.correction == "holm"
    assert experiment.cuped.enabled and experiment.cuped.lookback_days == 14
    assert experiment.plan is not None and experiment.plan.mde == 0.05


def test_a_guardrail_is_harmed_in_the_direction_opposite_to_its_metric() -> None:
    declared = parse_definitions(
        text(
            extra="    guardrail_metrics:\n"
            "      - mean_score\n"
            "      - {metric: conversion_save, threshold: 0.02}\n"
            "      - {metric: conversion_tool, harmful: increase}"
        )
    ).get("seg")
    score, save, tool = declared.guardrail_metrics
    assert (score.metric, score.threshold, score.harmful_direction) == ("mean_score", 0.0, "decrease")
    assert (save.threshold, save.harmful_direction) == (0.02, "decrease")
    assert tool.harmful_direction == "increase"
    assert declared.guardrail("conversion_save") == save and declared.guardrail("conversion_upload") is None


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            "    guardrail_metrics: [{metric: mean_score, threshold: -0.1}]",
            "experiments.seg.guardrail_metrics.0.threshold",
        ),
        ("    guardrail_metrics: [{metric: mean_score, harmful: up}]", "experiments.seg.guardrail_metrics.0.harmful"),
        ("    cuped: {lookback_days: 0}", "experiments.seg.cuped.lookback_days"),
        ("    plan: {mde: 0}", "experiments.seg.plan.mde"),
        ("    plan: {mde: 0.05, power: 0.3}", "experiments.seg.plan.power"),
    ],
)
def test_guardrail_cuped_and_plan_fields_are_checked_by_name(extra: str, field: str) -> None:
    with pytest.raises(DefinitionError) as exc:
        parse_definitions(text(extra=extra))
    assert fields_of(exc) == {field}


def test_the_cuped_lookback_is_part_of_the_plan_of_a_running_phase() -> None:
    with pytest.raises(DefinitionError) as exc:
        check_transition(
            parse_definitions(text()), parse_definitions(text(version=2, extra="    cuped: {lookback_days: 7}"))
        )
    assert "cuped" in str(exc.value)
