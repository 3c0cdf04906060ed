from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from clickhouse.settings import WarehouseSettings
from funnelstream.errors import ConfigurationError
from funnelstream.experiments.settings import DEFAULT_DEFINITIONS, ExperimentSettings
from funnelstream.settings import ServiceSettings, env_names
from funnelstream.topics import Topic
from infra.stack import InfraSettings
from ingest.settings import IngestSettings
from stream_processors.settings import StreamSettings
from tests.helpers.settings_classes import SETTINGS_CLASSES, variables_read

ROOT = Path(__file__).resolve().parents[2]
PROCESS_WIDE = {"FS_ENVIRONMENT", "FS_LOG_LEVEL", "FS_LOG_JSON"}
"""The only variables outside a section: every process reads them the same way."""


def documented() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        if line.startswith("FS_") and "=" in line and line.split("=", 1)[0].isupper():
            names.add(line.split("=", 1)[0])
    return names


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES, ids=lambda c: c.__module__)
def test_env_example_documents_every_variable(settings_class: type[BaseSettings]) -> None:
    missing = env_names(settings_class) - documented()
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_names_no_variable_that_nothing_reads() -> None:
    unread = documented() - variables_read()
    assert not unread, f".env.example names {sorted(unread)}, which no settings class reads"


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES, ids=lambda c: c.__module__)
def test_every_variable_is_section_then_field(settings_class: type[BaseSettings]) -> None:
    flat = {name for name in env_names(settings_class) - PROCESS_WIDE if "__" not in name}
    assert not flat, f"{sorted(flat)} are not FS_<SECTION>__<FIELD>"


def test_environment_overrides_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("FS_CLICKHOUSE__URL", "http://ch:8123/funnelstream")
    monkeypatch.setenv("FS_LOADER__EVENTS_TOPIC", "enriched-elsewhere")
    monkeypatch.setenv("FS_SQL__MAX_ROWS", "7")
    settings = ServiceSettings()
    assert settings.kafka.client_config()["bootstrap.servers"] == "broker-a:9092,broker-b:9092"
    assert not settings.clickhouse.embedded
    warehouse = WarehouseSettings()
    assert warehouse.loader.events_topic == "enriched-elsewhere" and warehouse.sql.max_rows == 7


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES, ids=lambda c: c.__module__)
def test_prod_refuses_every_dev_secret(settings_class: type[BaseSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_ENVIRONMENT", "prod")
    monkeypatch.delenv("FS_S3__SECRET_KEY", raising=False)
    with pytest.raises((ConfigurationError, ValueError), match="FS_S3__SECRET_KEY"):
        settings_class(_env_file=None)


def test_prod_names_each_remaining_dev_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_ENVIRONMENT", "prod")
    monkeypatch.setenv("FS_S3__SECRET_KEY", "a-real-secret")
    assert ServiceSettings(_env_file=None).s3.secret_key.get_secret_value() == "a-real-secret"
    with pytest.raises(ConfigurationError, match="FS_WAREHOUSE__READ_KEY_SHA256"):
        WarehouseSettings(_env_file=None)
    with pytest.raises(ConfigurationError, match="FS_INGEST__UPLOAD_TOKEN_SECRET"):
        IngestSettings(_env_file=None)
    monkeypatch.setenv("FS_INGEST__UPLOAD_TOKEN_SECRET", "another-real-secret")
    with pytest.raises(ConfigurationError, match="FS_INGEST__SOURCES"):
        IngestSettings(_env_file=None)


def kafka_names(model: BaseModel) -> dict[str, str]:
    """Every topic and consumer-group setting of a settings object, by dotted path."""
    found: dict[str, str] = {}
    for name, value in model:
        if isinstance(value, BaseModel):
            found |= {f"{name}.{key}": v for key, v in kafka_names(value).items()}
        elif name.endswith(("_topic", "group_id", "consumer_group", "app_id")):
            found[name] = value
        elif name == "consumer_groups":
            found |= {f"{name}.{key}": v for key, v in value.items()}
    return found


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES, ids=lambda c: c.__module__)
def test_one_namespace_moves_every_topic_and_consumer_group(
    settings_class: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = kafka_names(settings_class(_env_file=None))
    monkeypatch.setenv("FS_KAFKA__NAMESPACE", "run-1")
    private = kafka_names(settings_class(_env_file=None))
    assert private == {path: f"run-1.{name}" for path, name in plain.items()}


def test_a_namespace_keeps_a_switched_off_topic_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_KAFKA__NAMESPACE", "run-1")
    monkeypatch.setenv("FS_LOADER__SESSIONS_TOPIC", "")
    loader = WarehouseSettings(_env_file=None).loader
    assert loader.topics == ["run-1.events.enriched", "", "run-1.events.dlq", "run-1.dimensions.tools",
                             "run-1.dimensions.inferences"]  # fmt: skip
    assert str(Topic.EVENTS_ENRICHED) == "events.enriched"


def test_what_a_process_writes_lies_under_one_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_PATHS__DATA_DIR", str(tmp_path))
    assert WarehouseSettings(_env_file=None).clickhouse.chdb_path == tmp_path / "chdb"
    assert StreamSettings(_env_file=None).stream.data_dir == tmp_path / "stream"
    assert ExperimentSettings(_env_file=None).experiments.store_path == tmp_path / "experiments" / "assignments.sqlite3"
    assert InfraSettings(_env_file=None).stack.dir == tmp_path
    monkeypatch.setenv("FS_CLICKHOUSE__CHDB_PATH", str(tmp_path / "elsewhere"))
    assert ServiceSettings(_env_file=None).clickhouse.chdb_path == tmp_path / "elsewhere"


def test_the_default_data_dir_is_outside_the_source_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FS_PATHS__DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = ExperimentSettings(_env_file=None)
    assert settings.paths.data_dir == tmp_path / "funnelstream"
    assert settings.clickhouse.chdb_path.is_relative_to(tmp_path)
    assert not settings.experiments.store_path.is_relative_to(ROOT)
    # Package files travel with their package.
    assert settings.experiments.definitions_path == DEFAULT_DEFINITIONS and DEFAULT_DEFINITIONS.is_file()


def test_schema_command_writes_one_schema_per_event_type(tmp_path: Path) -> None:
    from funnelstream.contract import EVENT_MODELS
    from funnelstream.schema import write_schemas

    paths = write_schemas(tmp_path)
    names = {path.stem for path in paths}
    assert names == {str(t) for t in EVENT_MODELS} | {"event"}
    schema = json.loads((tmp_path / "score_submitted.json").read_text())
    assert {"event_id", "anonymous_id", "input_id", "job_id", "score", "client_ts"} <= set(schema["required"])
    assert schema["properties"]["score"]["maximum"] == 5
