"""The object store on the real local S3 server: reads within a byte limit, its errors, listing and deleting."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from funnelstream.errors import FunnelstreamError
from funnelstream.objectstore import MinioStore, ObjectNotFound, ObjectTooLarge, key_of_url, object_url


@pytest.fixture
def store(minio_client: Any, s3: Any) -> MinioStore:
    return MinioStore(minio_client, s3.bucket)


def test_a_read_within_the_limit_returns_bytes_type_and_etag(store: MinioStore) -> None:
    key = f"test/{uuid.uuid4()}.png"
    store.put(key, b"0123456789", "image/png")

    stored = store.read(key, max_bytes=10)

    assert stored.data == b"0123456789" and stored.content_type == "image/png" and stored.etag
    assert store.get(key) == b"0123456789"
    info = store.stat(key)
    assert (info.size, info.content_type, info.etag) == (10, "image/png", stored.etag)


def test_a_read_past_the_limit_and_a_missing_key_are_the_stores_errors(store: MinioStore) -> None:
    key = f"test/{uuid.uuid4()}.png"
    store.put(key, b"0123456789", "image/png")

    with pytest.raises(ObjectTooLarge) as too_large:
        store.read(key, max_bytes=9)
    with pytest.raises(ObjectNotFound) as missing:
        store.get(f"test/{uuid.uuid4()}.png")
    with pytest.raises(ObjectNotFound):
        store.stat(f"test/{uuid.uuid4()}.png")

    assert too_large.value.key == key and too_large.value.max_bytes == 9
    assert isinstance(too_large.value, FunnelstreamError) and isinstance(missing.value, FunnelstreamError)


def test_delete_counts_only_what_was_there(store: MinioStore) -> None:
    prefix = f"test/{uuid.uuid4()}/"
    for name in ("a.png", "b.png"):
        store.put(prefix + name, b"x", "image/png")

    assert sorted(store.keys(prefix)) == [prefix + "a.png", prefix + "b.png"]
    assert [store.delete(key) for key in sorted(store.keys(prefix))] == [True, True]
    assert store.keys(prefix) == [] and store.delete(prefix + "a.png") is False


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("s3://bucket/inputs/a.png", "inputs/a.png"),
        ("http://host:8333/bucket/inputs/a.png", "inputs/a.png"),
        ("https://host/bucket/inputs/a.png", "inputs/a.png"),
        ("s3://other/inputs/a.png", None),
        ("http://host/other/inputs/a.png", None),
        ("s3://bucket/", None),
        ("ftp://bucket/inputs/a.png", None),
    ],
)
def test_key_of_url_reads_keys_of_this_bucket_only(url: str, key: str | None) -> None:
    assert key_of_url(url, "bucket") == key


def test_object_url_and_key_of_url_round_trip() -> None:
    assert key_of_url(object_url("bucket", "results/2026/01/02/x.png"), "bucket") == "results/2026/01/02/x.png"
