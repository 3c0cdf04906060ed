"""The object store as the service sees it: get bytes by key, put bytes at a key."""

from __future__ import annotations

import io
from typing import Protocol
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import S3Error

from funnelstream.errors import TransientError
from inference_service.errors import InferenceError

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject"})


class ObjectNotFound(InferenceError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no object at {key!r}")


class ObjectStore(Protocol):
    bucket: str

    def get(self, key: str) -> bytes: ...

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

    def get(self, key: str) -> bytes:
        response = None
        try:
            response = self.client.get_object(self.bucket, key)
            return bytes(response.read())
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

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        except S3Error as exc:
            raise TransientError("s3", f"put {key}: {exc.code} {exc.message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError("s3", f"put {key}: {exc}") from exc
