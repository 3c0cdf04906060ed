"""The object store: a minio client, the store every service reads and writes through, and the object keys.

Owns the key layout (inputs, masks, results, proposals, datasets), the ``s3://`` URLs events carry,
and the store's errors: a missing object, an object over a size limit, or a store worth a retry
(``TransientError``). A read never holds more than its limit plus one byte.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from urllib.parse import urlparse
from uuid import UUID

import urllib3
from minio import Minio
from minio.datatypes import PostPolicy
from minio.error import S3Error
from urllib3 import BaseHTTPResponse

from funnelstream.errors import FunnelstreamError, TransientError
from funnelstream.settings import ObjectStoreConfig

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject"})
# A HEAD answer has no body: the SDK names a 404 by what the request named. A missing bucket is no
# missing key there; it is a store that is not set up.
KEY_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})


class ObjectStoreError(FunnelstreamError):
    """Root of the object store's errors about one object; each names its key."""


class ObjectNotFound(ObjectStoreError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no object at {key!r}")


class ObjectTooLarge(ObjectStoreError):
    def __init__(self, key: str, size: int | None, max_bytes: int) -> None:
        self.key = key
        self.size = size
        self.max_bytes = max_bytes
        stated = f"{size} bytes" if size is not None else "more bytes"
        super().__init__(f"object {key!r} holds {stated} than the limit of {max_bytes}")


@dataclass(frozen=True, slots=True)
class StoredObject:
    data: bytes
    content_type: str | None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int | None
    content_type: str | None
    etag: str | None


class ObjectStore(Protocol):
    bucket: str

    def get(self, key: str) -> bytes: ...

    def read(self, key: str, max_bytes: int) -> StoredObject:
        """The object's bytes and stored content type, refused past ``max_bytes`` without reading them all."""
        ...

    def put(self, key: str, data: bytes, content_type: str) -> None: ...


class MinioStore:
    """One bucket of an S3 server through the minio SDK."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def of(cls, config: ObjectStoreConfig) -> MinioStore:
        return cls(make_client(config), config.bucket)

    @contextmanager
    def _response(self, key: str) -> Iterator[BaseHTTPResponse]:
        """The object's GET response, with the store's errors told apart: missing, or worth a retry."""
        response = None
        try:
            with _retryable("get", key):
                try:
                    response = self.client.get_object(self.bucket, key)
                except S3Error as exc:
                    if exc.code in MISSING_CODES:
                        raise ObjectNotFound(key) from None
                    raise
                yield response
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def get(self, key: str) -> bytes:
        with self._response(key) as response:
            return bytes(response.read())

    def read(self, key: str, max_bytes: int) -> StoredObject:
        with self._response(key) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ObjectTooLarge(key, int(declared), max_bytes)
            # The bytes checked are the bytes used: one response, read to one past the limit.
            data = bytes(response.read(max_bytes + 1))
            if len(data) > max_bytes:
                raise ObjectTooLarge(key, None, max_bytes)
            etag = response.headers.get("ETag")
            return StoredObject(data, response.headers.get("Content-Type"), etag.strip('"') if etag else None)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with _retryable("put", key):
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def stat(self, key: str) -> ObjectInfo:
        """The stored object's size, content type and ETag, without its bytes."""
        with _retryable("stat", key):
            try:
                stat = self.client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in KEY_MISSING_CODES:
                    raise ObjectNotFound(key) from None
                raise
        return ObjectInfo(stat.size, stat.content_type, stat.etag)

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""
        with _retryable("list", prefix):
            listed = self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
            return [item.object_name for item in listed if item.object_name]

    def delete(self, key: str) -> bool:
        """Remove the object at ``key``; False when there was none (already deleted, or never uploaded)."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        with _retryable("delete", key):
            self.client.remove_object(self.bucket, key)
        return True


@contextmanager
def _retryable(action: str, key: str) -> Iterator[None]:
    """The store's failures as ``TransientError``: the request was fine, the store was not."""
    try:
        yield
    except S3Error as exc:
        raise TransientError("s3", f"{action} {key}: {exc.code} {exc.message}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransientError("s3", f"{action} {key}: {exc}") from exc


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


def object_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def key_of_url(url: str, bucket: str) -> str | None:
    """The object key behind an ``s3://bucket/key`` or ``http(s)://host/bucket/key`` URL in ``bucket``."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return parsed.path.lstrip("/") if parsed.netloc == bucket and parsed.path.strip("/") else None
    if parsed.scheme in ("http", "https"):
        head, _, key = parsed.path.lstrip("/").partition("/")
        return key if head == bucket and key else None
    return None


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
