"""The object store as the service sees it: get bytes by key (within a size limit), put bytes at a key."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import S3Error
from urllib3 import BaseHTTPResponse

from funnelstream.errors import TransientError
from inference_service.errors import InferenceError

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject"})


class ObjectNotFound(InferenceError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no object at {key!r}")


class ObjectTooLarge(InferenceError):
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


class ObjectStore(Protocol):
    bucket: str

    def get(self, key: str) -> bytes: ...

    def read(self, key: str, max_bytes: int) -> StoredObject:
        """The object's bytes and stored content type, refused past ``max_bytes`` without reading them all."""
        ...

    def put(self, key: str, data: bytes, content_type: str) -> None: ...


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


class MinioStore:
    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @contextmanager
    def _response(self, key: str) -> Iterator[BaseHTTPResponse]:
        """The object's GET response, with the store's errors told apart: missing, or worth a retry."""
        response = None
        try:
            response = self.client.get_object(self.bucket, key)
            yield response
        except S3Error as exc:
            if exc.code in MISSING_CODES:
                raise ObjectNotFound(key) from None
            raise TransientError("s3", f"get {key}: {exc.code} {exc.message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError("s3", f"get {key}: {exc}") from exc
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
        try:
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        except S3Error as exc:
            raise TransientError("s3", f"put {key}: {exc.code} {exc.message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError("s3", f"put {key}: {exc}") from exc
