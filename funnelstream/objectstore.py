"""Object store access through the minio SDK, and the object keys of DESIGN §9."""

from __future__ import annotations

import re
from datetime import date, datetime
from uuid import UUID

from minio import Minio
from minio.datatypes import PostPolicy

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


def presigned_upload(
    client: Minio, config: ObjectStoreConfig, key: str, content_type: str, max_bytes: int, expires: datetime
) -> tuple[str, dict[str, str]]:
    """A browser form upload of one object: the URL to POST to and the form fields to send before the file.

    The signed policy fixes the key and the content type and admits 1 to ``max_bytes`` bytes, so the
    holder cannot store elsewhere, another type or a larger body; unlike a presigned PUT, whose
    signature covers neither the body size nor (in practice) the client's Content-Type.
    """
    policy = PostPolicy(config.bucket, expires)
    policy.add_equals_condition("key", key)
    policy.add_equals_condition("Content-Type", content_type)
    policy.add_content_length_range_condition(1, max_bytes)
    fields = client.presigned_post_policy(policy)
    host = config.public_endpoint or config.endpoint
    url = f"{'https' if config.secure else 'http'}://{host}/{config.bucket}"
    return url, {"key": key, "Content-Type": content_type, **fields}


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


INPUT_KEY_PATTERN = (
    r"^inputs/\d{4}/\d{2}/\d{2}/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.(?:png|jpg|webp)$"
)
"""The shape of every key :func:`input_key` makes (with a lowercase UUID, as ``str(UUID)`` writes it)."""


def input_id_of_key(key: str) -> UUID | None:
    """The input_id an input key was made for, or None when the key is not one :func:`input_key` makes."""
    if re.fullmatch(INPUT_KEY_PATTERN, key) is None:
        return None
    return UUID(key.rsplit("/", 1)[1].split(".", 1)[0])


def mask_key(job_id: UUID, at: date | datetime) -> str:
    return f"masks/{_day(at)}/{job_id}.png"


def result_key(job_id: UUID, at: date | datetime) -> str:
    return f"results/{_day(at)}/{job_id}.png"


def proposals_prefix(job_id: UUID) -> str:
    return f"proposals/{job_id}/"


def dataset_key(name: str, start: date, end: date) -> str:
    return f"datasets/{name}/{start:%Y%m%d}_{end:%Y%m%d}.parquet"
