"""A private pipeline's one variable gives every service topics and consumer groups no other run uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from funnelstream.settings import KafkaConfig
from funnelstream.topics import TOPIC_SPECS, in_namespace
from ops.pipeline import LocalPipeline, Ports, namespaced_env
from tests.helpers.settings_classes import SETTINGS_CLASSES

TOPIC_FIELDS = ("_topic",)
NAME_FIELDS = ("_topic", "group_id", "consumer_group", "app_id")


def kafka_names(model: BaseModel, kinds: tuple[str, ...]) -> set[str]:
    """The topics (or topics and consumer groups) a settings object names, switched-off ones left out."""
    names: set[str] = set()
    for field, value in model:
        if isinstance(value, BaseModel):
            names |= kafka_names(value, kinds)
        elif field.endswith(kinds) and value:
            names.add(value)
        elif field == "consumer_groups" and kinds == NAME_FIELDS:
            names |= set(value.values())
    return names


def names_under(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, kinds: tuple[str, ...] = NAME_FIELDS
) -> set[str]:
    with monkeypatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        return set().union(*(kafka_names(c(_env_file=None), kinds) for c in SETTINGS_CLASSES))


def test_the_namespace_is_the_one_variable() -> None:
    assert namespaced_env("run-1") == {"FS_KAFKA__NAMESPACE": "run-1"}


def test_two_runs_share_no_topic_or_group(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = names_under({}, monkeypatch)
    first = names_under(namespaced_env("run-1"), monkeypatch)
    second = names_under(namespaced_env("run-2"), monkeypatch)
    assert shared and len(first) == len(shared) == len(second)
    assert not (first & shared) and not (second & shared) and not (first & second)
    assert all(name.startswith("run-1.") for name in first)
    # The topics a run creates are the ones its services read and write.
    created = {in_namespace(spec.topic, "run-1") for spec in TOPIC_SPECS}
    assert names_under(namespaced_env("run-1"), monkeypatch, TOPIC_FIELDS) == created


def test_a_local_pipeline_keeps_its_data_in_its_workdir(tmp_path: Path) -> None:
    pipeline = LocalPipeline(tmp_path, Ports(), KafkaConfig(), namespace="run-1")
    assert pipeline.env["FS_KAFKA__NAMESPACE"] == "run-1"
    assert pipeline.env["FS_PATHS__DATA_DIR"] == str(tmp_path)
