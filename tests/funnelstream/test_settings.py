from __future__ import annotations

from pathlib import Path

import pytest

from clickhouse.qa.settings import QASettings
from clickhouse.settings import WarehouseSettings
from funnelstream.errors import ConfigurationError
from funnelstream.experiments.settings import ExperimentSettings
from funnelstream.settings import ServiceSettings, env_names
from inference_service.settings import InferenceSettings
from infra.stack import InfraSettings
from ingest.settings import IngestSettings
from stream_processors.settings import StreamSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_CLASSES = [
    ServiceSettings,
    InfraSettings,
    QASettings,
    ExperimentSettings,
    InferenceSettings,
    WarehouseSettings,
    IngestSettings,
    StreamSettings,
]


@pytest.mark.parametrize("settings_class", SETTINGS_CLASSES, ids=lambda c: c.__module__)
def test_env_example_documents_every_variable(settings_class: type) -> None:
    documented = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        if "=" in line and line.split("=", 1)[0].isupper():
            documented.add(line.split("=", 1)[0])
    missing = env_names(settings_class) - documented
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_environment_overrides_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("FS_CLICKHOUSE__URL", "http://ch:8123/funnelstream")
    settings = ServiceSettings()
    assert settings.kafka.client_config()["bootstrap.servers"] == "broker-a:9092,broker-b:9092"
    assert not settings.clickhouse.embedded


def test_prod_refuses_the_dev_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_ENVIRONMENT", "prod")
    monkeypatch.delenv("FS_S3__SECRET_KEY", raising=False)
    with pytest.raises((ConfigurationError, ValueError), match="FS_S3__SECRET_KEY"):
        ServiceSettings(_env_file=None)
    monkeypatch.setenv("FS_S3__SECRET_KEY", "a-real-secret")
    assert ServiceSettings(_env_file=None).s3.secret_key.get_secret_value() == "a-real-secret"


def test_schema_command_writes_one_schema_per_event_type(tmp_path: Path) -> None:
    import json

    from funnelstream.contract import EVENT_MODELS
    from funnelstream.schema import write_schemas

    paths = write_schemas(tmp_path)
    names = {path.stem for path in paths}
    assert names == {str(t) for t in EVENT_MODELS} | {"event"}
    schema = json.loads((tmp_path / "score_submitted.json").read_text())
    assert {"event_id", "anonymous_id", "input_id", "job_id", "score", "client_ts"} <= set(schema["required"])
    assert schema["properties"]["score"]["maximum"] == 5
