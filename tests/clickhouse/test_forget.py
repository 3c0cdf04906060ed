"""Forgetting a person on a real embedded warehouse and the real S3 server, and its command's argument checks."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from minio.error import S3Error
from typer.testing import CliRunner

from clickhouse.backend import Warehouse
from clickhouse.cli import forget_app
from clickhouse.forget import forget_person
from clickhouse.settings import WarehouseSettings
from funnelstream import objectstore
from funnelstream.contract import EnrichedEvent, EventType
from funnelstream.objectstore import MinioStore, object_url
from tests.helpers.cli import panel_text
from tests.helpers.warehouse import enriched, load, open_test_warehouse

PERSON_TABLES = ("events", "input_uploads", "inference_clicks", "scores")


def _put(client: Any, bucket: str, key: str) -> None:
    client.put_object(bucket, key, io.BytesIO(b"\x89PNG fake"), 9)


def _exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.stat_object(bucket, key)
        return True
    except S3Error:
        return False


def device_history(client: Any, bucket: str, device: str, user_id: str | None) -> tuple[list[EnrichedEvent], list[str]]:
    """One upload, a restore with mask and result, a scored result and a segmentation with proposals."""
    at = datetime(2026, 2, 1, 9, tzinfo=UTC)
    input_id, restore_job, segment_job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    keys = [
        objectstore.input_key(input_id, at, "jpg"),
        objectstore.mask_key(restore_job, at),
        objectstore.result_key(restore_job, at),
        f"{objectstore.proposals_prefix(segment_job)}000.png",
        f"{objectstore.proposals_prefix(segment_job)}proposals.json",
    ]
    for key in keys:
        _put(client, bucket, key)
    common = {"input_id": input_id, "user_id": user_id}
    events = [
        enriched(EventType.IMAGE_UPLOADED, at, device, input_url=object_url(bucket, keys[0]), **common),
        enriched(
            EventType.SEGMENTS_PROPOSED,
            at + timedelta(seconds=1),
            device,
            job_id=segment_job,
            proposal_count=1,
            latency_ms=5.0,
            **common,
        ),
        enriched(
            EventType.INFERENCE_COMPLETED,
            at + timedelta(seconds=9),
            device,
            job_id=restore_job,
            inference_id=1,
            status="succeeded",
            mask_url=object_url(bucket, keys[1]),
            inference_url=object_url(bucket, keys[2]),
            model_name="m",
            model_version="1",
            latency_ms=9.0,
            **common,
        ),
        enriched(EventType.SCORE_SUBMITTED, at + timedelta(minutes=1), device, job_id=restore_job, score=5, **common),
    ]
    return events, keys


@pytest.fixture
def people(tmp_path: Path, minio_client: Any, s3: Any) -> tuple[Warehouse, dict[str, list[str]]]:
    warehouse = open_test_warehouse(tmp_path / "chdb")
    suffix = uuid.uuid4().hex[:8]
    devices = {f"laptop-{suffix}": "user-1", f"phone-{suffix}": "user-1", f"other-{suffix}": None}
    keys_of: dict[str, list[str]] = {}
    events: list[EnrichedEvent] = []
    for device, user_id in devices.items():
        device_events, keys = device_history(minio_client, s3.bucket, device, user_id and f"{user_id}-{suffix}")
        events += device_events
        keys_of[device] = keys
    load(warehouse, events)
    yield warehouse, keys_of
    warehouse.close()


def _rows(warehouse: Warehouse, table: str, device: str) -> int:
    return int(
        warehouse.query_rows(f"SELECT count() AS n FROM {table} WHERE anonymous_id = {{d:String}}", {"d": device})[0][
            "n"
        ]
    )


def test_forget_a_device_deletes_its_images_and_rows_and_nothing_else(
    people: tuple[Warehouse, dict[str, list[str]]], minio_client: Any, s3: Any
) -> None:
    warehouse, keys_of = people
    target = next(device for device in keys_of if device.startswith("other-"))
    others = [device for device in keys_of if device != target]
    rows_before = {table: _rows(warehouse, table, target) for table in PERSON_TABLES}
    assert all(rows_before.values()), rows_before

    report = forget_person(
        WarehouseSettings(s3=s3), anonymous_id=target, warehouse=warehouse, store=MinioStore(minio_client, s3.bucket)
    )

    assert report.anonymous_ids == [target]
    assert report.objects_deleted == 5
    assert not any(_exists(minio_client, s3.bucket, key) for key in keys_of[target])
    for table in PERSON_TABLES:
        assert report.rows_deleted[table] == rows_before[table]
        assert _rows(warehouse, table, target) == 0
    for device in others:
        assert all(_exists(minio_client, s3.bucket, key) for key in keys_of[device])
        assert _rows(warehouse, "events", device) == 4
    assert "images deleted: 5" in report.lines()

    again = forget_person(
        WarehouseSettings(s3=s3), anonymous_id=target, warehouse=warehouse, store=MinioStore(minio_client, s3.bucket)
    )
    assert again.objects_deleted == 0 and sum(again.rows_deleted.values()) == 0, "a rerun finds nothing left"


def test_forget_a_user_covers_every_device_it_used(
    people: tuple[Warehouse, dict[str, list[str]]], minio_client: Any, s3: Any
) -> None:
    warehouse, keys_of = people
    laptop = next(device for device in keys_of if device.startswith("laptop-"))
    user_id = f"user-1-{laptop.removeprefix('laptop-')}"

    report = forget_person(
        WarehouseSettings(s3=s3), user_id=user_id, warehouse=warehouse, store=MinioStore(minio_client, s3.bucket)
    )

    assert len(report.anonymous_ids) == 2
    assert report.objects_deleted == 10
    assert report.rows_deleted["events"] == 8
    other = next(device for device in keys_of if device.startswith("other-"))
    assert _rows(warehouse, "events", other) == 4
    assert all(_exists(minio_client, s3.bucket, key) for key in keys_of[other])


def test_forget_needs_exactly_one_identity() -> None:
    root = typer.Typer()
    root.add_typer(forget_app, name="forget")
    neither = CliRunner().invoke(root, ["forget"])
    both = CliRunner().invoke(root, ["forget", "--anonymous-id", "a", "--user-id", "u"])
    assert neither.exit_code == 2 and "exactly one of --anonymous-id and --user-id" in panel_text(neither.output)
    assert both.exit_code == 2
