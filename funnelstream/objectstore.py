"""Object store access through the minio SDK, and the object keys of DESIGN §9."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from minio import Minio

from funnelstream.settings import ObjectStoreConfig


def make_client(config: ObjectStoreConfig, *, public: bool = False) -> Minio:
    """A client for services, or with ``public`` one that signs URLs for the browser's host."""
    endpoint = config.public_endpoint if public and config.public_endpoint else config.endpoint
    return Minio(
        endpoint,
        access_key=config.access_key,
        secret_key=config.secret_key.get_secret_value(),
        secure=config.secure,
        # A fixed region stops the SDK from asking the server for it before signing a URL.
        region=config.region,
    )


def ensure_bucket(client: Minio, bucket: str) -> bool:
    """Create the bucket if it is missing; returns whether it was created."""
    if client.bucket_exists(bucket):
        return False
    client.make_bucket(bucket)
    return True


def _day(at: date | datetime) -> str:
    return f"{at:%Y/%m/%d}"


def input_key(input_id: UUID, at: date | datetime, extension: str) -> str:
    return f"inputs/{_day(at)}/{input_id}.{extension.lstrip('.').lower()}"


def mask_key(job_id: UUID, at: date | datetime) -> str:
    return f"masks/{_day(at)}/{job_id}.png"


def result_key(job_id: UUID, at: date | datetime) -> str:
    return f"results/{_day(at)}/{job_id}.png"


def proposals_prefix(job_id: UUID) -> str:
    return f"proposals/{job_id}/"


def dataset_key(name: str, start: date, end: date) -> str:
    return f"datasets/{name}/{start:%Y%m%d}_{end:%Y%m%d}.parquet"
