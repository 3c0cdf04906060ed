"""Configuration sections shared by the services. The environment is read here and nowhere else.

Each service has one settings class (``ingest.settings``, ``clickhouse.settings``, ...) built from
these sections. Every variable is ``FS_<SECTION>__<FIELD>`` (``FS_KAFKA__BOOTSTRAP_SERVERS``,
``FS_LOADER__EVENTS_TOPIC``), bar the process-wide ``FS_ENVIRONMENT`` and ``FS_LOG_*``;
``.env.example`` lists them all and a test holds it to the classes. Files a process writes default
to places under ``FS_PATHS__DATA_DIR``, which is outside the source tree.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnelstream.errors import ConfigurationError
from funnelstream.topics import InNamespace, in_namespace

DEV_S3_ACCESS_KEY = "funnelstream"
DEV_S3_SECRET_KEY = "funnelstream-dev-secret"  # noqa: S105 -- refused outside dev by ServiceSettings
UNDER_DATA_DIR = "under_data_dir"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/funnelstream``, else ``~/.local/share/funnelstream``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "funnelstream"


def under_data_dir(relative: str) -> Any:
    """A path field whose default is ``relative`` inside ``FS_PATHS__DATA_DIR``."""
    return Field(
        default_factory=lambda: default_data_dir() / relative,
        json_schema_extra={UNDER_DATA_DIR: relative},
    )


class PathsConfig(BaseModel):
    data_dir: Path = Field(default_factory=default_data_dir)
    """Where processes keep what they write (embedded chdb, stream state, assignments, reports,
    the local stack), unless a path of its own is set."""


class KafkaConfig(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    namespace: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    """Prefix of every topic and consumer group (``<namespace>.events.raw``): a private run on a
    shared broker. Empty in production."""
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    """Replicas that must hold a message before ``acks=all`` succeeds; set on every topic created
    here. With replication 3, 2 keeps a 202 on two disks while one broker is away."""

    @model_validator(mode="after")
    def _insync_within_replication(self) -> KafkaConfig:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError("min_insync_replicas must not exceed replication_factor")
        return self

    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    def client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka settings every client of this cluster needs."""
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        return config


class ObjectStoreConfig(BaseModel):
    endpoint: str = "127.0.0.1:8333"
    public_endpoint: str | None = None
    """Host browsers use for presigned URLs, when it differs from the one services use."""
    secure: bool = False
    region: str = "us-east-1"
    bucket: str = Field(default="funnelstream", min_length=3, max_length=63)
    access_key: str = DEV_S3_ACCESS_KEY
    secret_key: SecretStr = SecretStr(DEV_S3_SECRET_KEY)


class ClickHouseConfig(BaseModel):
    url: str | None = None
    """``http(s)://user:password@host:port/database`` of a ClickHouse server. Unset: embedded chdb."""
    chdb_path: Path = under_data_dir("chdb")
    database: str = "funnelstream"
    cluster: str | None = None
    """With a cluster name, migrations render ON CLUSTER DDL with Replicated engines."""

    @property
    def embedded(self) -> bool:
        return self.url is None


class ServiceSettings(BaseSettings):
    """Base of every service's settings class."""

    model_config = SettingsConfigDict(
        env_prefix="FS_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    environment: Literal["dev", "test", "prod"] = "dev"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    paths: PathsConfig = Field(default_factory=PathsConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    s3: ObjectStoreConfig = Field(default_factory=ObjectStoreConfig)
    clickhouse: ClickHouseConfig = Field(default_factory=ClickHouseConfig)

    @model_validator(mode="after")
    def _no_dev_secrets_in_prod(self) -> Self:
        if self.environment == "prod" and self.s3.secret_key.get_secret_value() == DEV_S3_SECRET_KEY:
            raise ConfigurationError("FS_S3__SECRET_KEY must be set outside dev; the dev default is public")
        return self

    @model_validator(mode="after")
    def _resolve_names_and_paths(self) -> Self:
        _resolve(self, self.kafka.namespace, self.paths.data_dir)
        return self


def _in_namespace(annotation: Any, metadata: list[Any]) -> bool:
    return any(isinstance(m, InNamespace) for m in [*metadata, *getattr(annotation, "__metadata__", ())])


def _resolve(section: BaseModel, namespace: str, data_dir: Path) -> None:
    """Prefix topic and group names with the namespace; put unset data paths under the data dir."""
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        extra = field.json_schema_extra
        if isinstance(value, BaseModel):
            _resolve(value, namespace, data_dir)
        elif isinstance(extra, dict) and UNDER_DATA_DIR in extra and name not in section.model_fields_set:
            setattr(section, name, data_dir / str(extra[UNDER_DATA_DIR]))
        elif namespace and isinstance(value, str) and _in_namespace(field.annotation, field.metadata):
            setattr(section, name, in_namespace(value, namespace))
        elif namespace and isinstance(value, dict):
            value_type = typing.get_args(field.annotation)[1:2]
            if value_type and _in_namespace(value_type[0], []):
                setattr(section, name, {key: in_namespace(group, namespace) for key, group in value.items()})


def env_names(settings_class: type[BaseSettings], *, sections: bool = False) -> set[str]:
    """Every environment variable a settings class reads, nested sections flattened.

    With ``sections``, the names of the sections too (a section can be given as one JSON value).
    """
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    delimiter = str(settings_class.model_config.get("env_nested_delimiter") or "__")

    def walk(model: type[BaseModel], path: str) -> set[str]:
        names = set()
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names |= walk(annotation, f"{path}{name}{delimiter}")
                if sections:
                    names.add(f"{path}{name}".upper())
            else:
                names.add(f"{path}{name}".upper())
        return names

    return walk(settings_class, prefix)
