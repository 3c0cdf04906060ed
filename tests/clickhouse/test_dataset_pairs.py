"""dataset_pairs: a result's missing upload, request or score is NULL in the answer and in the
Parquet manifest, never 1970-01-01 or a zero score."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from clickhouse import queries
from clickhouse.backend import Warehouse
from clickhouse.retraining import DatasetFilter, manifest_table
from tests.helpers.event_rows import event, insert_events

SELECTION = DatasetFilter(start=datetime(2026, 3, 1, tzinfo=UTC).date(), end=datetime(2026, 3, 1, tzinfo=UTC).date())


def completed(job: str, image: str, at: str) -> dict[str, Any]:
    return event(
        "inference_completed",
        at,
        input_id=image,
        job_id=job,
        status="succeeded",
        inference_id=1,
        inference_type="inpainting",
        inference_url=f"s3://b/results/{job}.png",
        mask_url=f"s3://b/masks/{job}.png",
        model_version="lama-1.1",
    )


def test_missing_upload_request_and_score_are_null(warehouse: Warehouse) -> None:
    whole_job, whole_image = str(uuid.uuid4()), str(uuid.uuid4())
    bare_job, bare_image = str(uuid.uuid4()), str(uuid.uuid4())
    insert_events(
        warehouse,
        [
            event("image_uploaded", "2026-03-01 10:00:00", input_id=whole_image, input_url="s3://b/in.png", width=64),
            event("inference_requested", "2026-03-01 10:00:10", input_id=whole_image, job_id=whole_job),
            completed(whole_job, whole_image, "2026-03-01 10:00:12"),
            event("score_submitted", "2026-03-01 10:01:00", input_id=whole_image, job_id=whole_job, score=4),
            # A result whose upload, request and score never arrived.
            completed(bare_job, bare_image, "2026-03-01 11:00:00"),
        ],
    )
    rows = queries.run(warehouse, "dataset_pairs", SELECTION.parameters())
    assert [row["job_id"] for row in rows] == [whole_job, bare_job]
    whole, bare = rows
    assert whole["score"] == 4 and whole["width"] == 64
    assert str(whole["uploaded_at"]).startswith("2026-03-01 10:00:00")
    assert str(whole["requested_at"]).startswith("2026-03-01 10:00:10")
    assert str(whole["scored_at"]).startswith("2026-03-01 10:01:00")
    missing = {name: bare[name] for name in ("uploaded_at", "requested_at", "scored_at", "score", "width", "input_url")}
    assert missing == dict.fromkeys(missing)
    manifest = manifest_table(rows).to_pylist()
    assert {name: manifest[1][name] for name in missing} == dict.fromkeys(missing)
    assert manifest[0]["uploaded_at"] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    # A score filter keeps only scored results; the unscored one is not a zero score.
    scored = queries.run(warehouse, "dataset_pairs", {**SELECTION.parameters(), "min_score": 0})
    assert [row["job_id"] for row in scored] == [whole_job]
