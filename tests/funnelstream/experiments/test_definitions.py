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

ROOT = Path(__file__).resolve().parents[3]

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
    definitions = load_definitions(ROOT / "experiments.yaml")
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
