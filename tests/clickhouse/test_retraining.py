"""Dataset export on a real embedded warehouse and the real S3 server, and its command's argument checks."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from clickhouse.backend import Warehouse
from clickhouse.cli import dataset_app
from clickhouse.client import DirectReader
from clickhouse.retraining import DatasetFilter, export_dataset
from clickhouse.settings import WarehouseSettings
from funnelstream import objectstore
from funnelstream.contract import EnrichedEvent, EventType
from funnelstream.objectstore import MinioStore, object_url
from tests.helpers.cli import panel_text
from tests.helpers.images import png, scene
from tests.helpers.warehouse import enriched, load, open_test_warehouse


@dataclass(frozen=True)
class Pair:
    job_id: uuid.UUID
    completed_at: datetime
    inference_id: int
    model_version: str
    score: int | None
    succeeded: bool
    input_key: str
    mask_key: str | None
    result_key: str


def _put(client: Any, bucket: str, key: str, data: bytes) -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="image/png")


@pytest.fixture
def history(tmp_path: Path, minio_client: Any, s3: Any) -> tuple[Warehouse, list[Pair]]:
    """Ten days of jobs: one at noon, one whose result lands just after midnight; some failed, some rated."""
    warehouse = open_test_warehouse(tmp_path / "chdb")
    events: list[EnrichedEvent] = []
    pairs: list[Pair] = []
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for day in range(10):
        for offset in (timedelta(0), timedelta(hours=11, minutes=59, seconds=58)):
            at = start + timedelta(days=day) + offset
            index = len(pairs)
            device = f"device-{index % 3}"
            input_id, job_id = uuid.uuid4(), uuid.uuid4()
            inference_id = (index % 3) + 1
            input_key = objectstore.input_key(input_id, at, "png")
            mask_key = objectstore.mask_key(job_id, at) if inference_id == 1 else None
            result_key = objectstore.result_key(job_id, at)
            succeeded = index % 7 != 3
            score = None if index % 4 == 0 else (index % 5) + 1
            model_version = "v2" if index % 2 else "v1"
            pairs.append(
                Pair(
                    job_id,
                    at + timedelta(seconds=3),
                    inference_id,
                    model_version,
                    score,
                    succeeded,
                    input_key,
                    mask_key,
                    result_key,
                )
            )
            image = png(scene(24, 32, seed=index))
            _put(minio_client, s3.bucket, input_key, image)
            if mask_key:
                _put(minio_client, s3.bucket, mask_key, png(np.full((24, 32), 255, np.uint8)))
            if succeeded:
                _put(minio_client, s3.bucket, result_key, image)
            url = lambda key: object_url(s3.bucket, key)  # noqa: E731
            events.append(
                enriched(
                    EventType.IMAGE_UPLOADED,
                    at - timedelta(seconds=30),
                    device,
                    input_id=input_id,
                    input_url=url(input_key),
                    width=32,
                    height=24,
                )
            )
            events.append(
                enriched(
                    EventType.INFERENCE_REQUESTED,
                    at,
                    device,
                    input_id=input_id,
                    job_id=job_id,
                    inference_id=inference_id,
                )
            )
            completed = enriched(
                EventType.INFERENCE_COMPLETED,
                at + timedelta(seconds=3),
                device,
                input_id=input_id,
                job_id=job_id,
                inference_id=inference_id,
                status="succeeded" if succeeded else "failed",
                inference_url=url(result_key) if succeeded else None,
                mask_url=url(mask_key) if mask_key else None,
                model_name="test-model",
                model_version=model_version,
                latency_ms=3000.0,
            )
            events.append(completed)
            events.append(completed)  # a replay: the pair must still appear once
            if score is not None:
                events.append(
                    enriched(
                        EventType.SCORE_SUBMITTED,
                        at + timedelta(minutes=1),
                        device,
                        input_id=input_id,
                        job_id=job_id,
                        score=score,
                    )
                )
    load(warehouse, events)
    yield warehouse, pairs
    warehouse.close()


def expected(pairs: list[Pair], first: date, last: date, **filters: Any) -> set[str]:
    chosen = set()
    for pair in pairs:
        if not pair.succeeded or not first <= pair.completed_at.date() <= last:
            continue
        if filters.get("min_score") is not None and (pair.score is None or pair.score < filters["min_score"]):
            continue
        if filters.get("inference_type") == "inpainting" and pair.inference_id != 1:
            continue
        if filters.get("model_version") is not None and pair.model_version != filters["model_version"]:
            continue
        chosen.add(str(pair.job_id))
    return chosen


def settings_for(s3: Any) -> WarehouseSettings:
    return WarehouseSettings(s3=s3)


@pytest.mark.parametrize(
    "filters",
    [{}, {"min_score": 4}, {"inference_type": "inpainting"}, {"model_version": "v2"}],
    ids=["all", "min-score", "inference-type", "model-version"],
)
def test_manifest_holds_exactly_the_pairs_of_the_range(
    history: tuple[Warehouse, list[Pair]], tmp_path: Path, minio_client: Any, s3: Any, filters: dict[str, Any]
) -> None:
    warehouse, pairs = history
    first, last = date(2026, 1, 3), date(2026, 1, 6)
    name = f"test-{uuid.uuid4().hex[:8]}"

    summary = export_dataset(
        settings_for(s3),
        DatasetFilter(first, last, **filters),
        name=name,
        out_dir=tmp_path / "out",
        reader=DirectReader(warehouse),
        show_progress=False,
    )

    manifest = pq.read_table(summary.local_path).to_pylist()
    wanted = expected(pairs, first, last, **filters)
    assert wanted, "the fixture has pairs for every filter"
    assert {row["job_id"] for row in manifest} == wanted
    assert len(manifest) == summary.rows, "each pair once, replays collapsed"
    by_job = {str(pair.job_id): pair for pair in pairs}
    for row in manifest:
        pair = by_job[row["job_id"]]
        assert row["input_url"] == object_url(s3.bucket, pair.input_key)
        assert row["result_url"] == object_url(s3.bucket, pair.result_key)
        assert row["mask_url"] == (object_url(s3.bucket, pair.mask_key) if pair.mask_key else None)
        assert row["score"] == pair.score
        assert row["model_version"] == pair.model_version
        assert row["completed_at"] == pair.completed_at
    stored = minio_client.get_object(s3.bucket, f"datasets/{name}/20260103_20260106.parquet").read()
    assert stored == summary.local_path.read_bytes()


def test_download_lays_out_the_images_for_training(
    history: tuple[Warehouse, list[Pair]], tmp_path: Path, s3: Any, minio_client: Any
) -> None:
    warehouse, pairs = history
    target = tmp_path / "train"

    summary = export_dataset(
        settings_for(s3),
        DatasetFilter(date(2026, 1, 1), date(2026, 1, 2)),
        name=f"test-{uuid.uuid4().hex[:8]}",
        out_dir=tmp_path / "out",
        download_dir=target,
        reader=DirectReader(warehouse),
        show_progress=False,
    )

    manifest = pq.read_table(target / "manifest.parquet").to_pylist()
    assert summary.rows == len(manifest) > 0
    store = MinioStore(minio_client, s3.bucket)
    for row in manifest:
        pair = next(p for p in pairs if str(p.job_id) == row["job_id"])
        assert row["local_input"] == f"{row['inference_type']}/inputs/{row['job_id']}.png"
        assert (target / row["local_input"]).read_bytes() == store.get(pair.input_key)
        assert (target / row["local_result"]).read_bytes() == store.get(pair.result_key)
        if pair.mask_key:
            assert (target / row["local_mask"]).is_file()
        else:
            assert row["local_mask"] is None
    assert summary.downloaded == sum(1 + (row["local_mask"] is not None) + 1 for row in manifest)


def test_export_refuses_a_bad_range_naming_the_option() -> None:
    root = typer.Typer()
    root.add_typer(dataset_app, name="dataset")
    reversed_range = CliRunner().invoke(root, ["dataset", "export", "--from", "2026-02-01", "--to", "2026-01-01"])
    bad_day = CliRunner().invoke(root, ["dataset", "export", "--from", "2026-13-01", "--to", "2026-12-01"])
    assert reversed_range.exit_code == 2 and "is before --from" in panel_text(reversed_range.output)
    text = panel_text(bad_day.output)
    assert bad_day.exit_code == 2 and "--from" in text and "YYYY-MM-DD" in text
