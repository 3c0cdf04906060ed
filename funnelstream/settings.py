"""Configuration sections shared by the services. The environment is read here and nowhere else.

Each service has one settings class (``ingest.settings``, ``stream_processors.settings``, ...)
built from these sections. Variables use the ``FS_`` prefix and ``__`` for nesting, e.g.
``FS_KAFKA__BOOTSTRAP_SERVERS`` or ``FS_S3__ENDPOINT``; ``.env.example`` lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from funnelstream.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEV_S3_ACCESS_KEY = "funnelstream"
DEV_S3_SECRET_KEY = "funnelstream-dev-secret"  # noqa: S105 -- refused outside dev by ServiceSettings


class KafkaConfig(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
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
    chdb_path: Path = PROJECT_ROOT / ".stack" / "chdb"
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
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    s3: ObjectStoreConfig = Field(default_factory=ObjectStoreConfig)
    clickhouse: ClickHouseConfig = Field(default_factory=ClickHouseConfig)

    @model_validator(mode="after")
    def _no_dev_secrets_in_prod(self) -> Self:
        if self.environment == "prod" and self.s3.secret_key.get_secret_value() == DEV_S3_SECRET_KEY:
            raise ConfigurationError("FS_S3__SECRET_KEY must be set outside dev; the dev default is public")
        return self


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads, nested sections flattened."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    names = set()
    for name, field in settings_class.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= {f"{prefix}{name}__{sub}".upper() for sub in annotation.model_fields}
        else:
            names.add(f"{prefix}{name}".upper())
    return names
