"""``funnelstream dataset export``: the input / mask / result pairs of a date range as a Parquet manifest.

Owns the manifest's schema. The pairs come from the named query ``dataset_pairs`` (through the
warehouse API when ``warehouse serve`` runs, else on the warehouse directly), one day per query; the
manifest goes to ``datasets/<name>/<from>_<to>.parquet`` locally and in the bucket, and ``--download``
copies the images under DIR/<inference_type>/{inputs,masks,results}/<job_id>.<ext> beside DIR/manifest.parquet.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clickhouse.client import WarehouseReader, connect
from clickhouse.errors import WarehouseError
from clickhouse.settings import WarehouseSettings
from funnelstream import objectstore
from funnelstream.objectstore import MinioStore, ObjectNotFound, ObjectStore, key_of_url

QUERY_NAME = "dataset_pairs"
TIMESTAMP = pa.timestamp("ms", tz="UTC")
MANIFEST_SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("input_id", pa.string()),
        ("input_url", pa.string()),
        ("mask_url", pa.string()),
        ("result_url", pa.string()),
        ("score", pa.int16()),
        ("inference_id", pa.int64()),
        ("inference_name", pa.string()),
        ("inference_type", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("uploaded_at", TIMESTAMP),
        ("requested_at", TIMESTAMP),
        ("completed_at", TIMESTAMP),
        ("scored_at", TIMESTAMP),
    ]
)


class DatasetError(WarehouseError):
    """A manifest row whose image cannot be copied: ``field`` names its URL column."""

    def __init__(self, job_id: str, field: str, reason: str) -> None:
        self.job_id = job_id
        self.field = field
        super().__init__(f"job {job_id}: {field}: {reason}")


@dataclass(frozen=True, slots=True)
class DatasetFilter:
    start: date
    end: date
    """Inclusive: the whole last day counts."""
    min_score: int | None = None
    inference_type: str | None = None
    model_version: str | None = None

    def days(self) -> list[date]:
        return [self.start + timedelta(days=offset) for offset in range((self.end - self.start).days + 1)]

    def parameters(self) -> dict[str, Any]:
        return {
            "from": datetime.combine(self.start, time(0), UTC),
            "to": datetime.combine(self.end + timedelta(days=1), time(0), UTC),
            "min_score": self.min_score,
            "inference_type": self.inference_type,
            "model_version": self.model_version,
        }


@dataclass(frozen=True, slots=True)
class ExportSummary:
    rows: int
    local_path: Path
    bucket: str
    object_key: str
    downloaded: int


def _timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value
    # The API answers in JSON: ISO text.
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace(" ", "T"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def manifest_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list[Any]] = {field.name: [] for field in MANIFEST_SCHEMA}
    for row in rows:
        for field in MANIFEST_SCHEMA:
            value = row.get(field.name)
            if pa.types.is_timestamp(field.type):
                value = _timestamp(value)
            elif value is not None and pa.types.is_integer(field.type):
                value = int(value)
            elif value is not None and pa.types.is_string(field.type):
                value = str(value)
            columns[field.name].append(value)
    return pa.table(columns, schema=MANIFEST_SCHEMA)


def select_pairs(
    reader: WarehouseReader, selection: DatasetFilter, on_day: Callable[[date], None] | None = None
) -> pa.Table:
    """One query per day: the query API caps rows per answer, and a day shows progress."""
    rows: list[dict[str, Any]] = []
    for day in selection.days():
        rows += reader.named(QUERY_NAME, replace(selection, start=day, end=day).parameters())
        if on_day is not None:
            on_day(day)
    return manifest_table(rows)


def _extension(key: str, default: str = "png") -> str:
    suffix = PurePosixPath(key).suffix.lstrip(".").lower()
    return suffix or default


def download_pairs(
    table: pa.Table, store: ObjectStore, directory: Path, progress: Progress | None = None
) -> tuple[pa.Table, int]:
    """Copy every image of the manifest under ``directory``; returns the manifest with local paths."""
    local: dict[str, list[str | None]] = {"local_input": [], "local_mask": [], "local_result": []}
    task = progress.add_task("images", total=table.num_rows) if progress else None
    copied = 0
    for row in table.to_pylist():
        group = row["inference_type"] or row["inference_name"] or f"inference_{row['inference_id']}"
        for column, url, folder in (
            ("local_input", row["input_url"], "inputs"),
            ("local_mask", row["mask_url"], "masks"),
            ("local_result", row["result_url"], "results"),
        ):
            if url is None:
                local[column].append(None)
                continue
            key = key_of_url(url, store.bucket)
            if key is None:
                raise DatasetError(
                    row["job_id"], column.removeprefix("local_") + "_url", f"{url} is not in {store.bucket}"
                )
            try:
                data = store.get(key)
            except ObjectNotFound:
                raise DatasetError(row["job_id"], column.removeprefix("local_") + "_url", f"{key} is gone") from None
            target = directory / group / folder / f"{row['job_id']}.{_extension(key)}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            local[column].append(str(target.relative_to(directory)))
            copied += 1
        if progress is not None and task is not None:
            progress.advance(task)
    for name, values in local.items():
        table = table.append_column(name, pa.array(values, pa.string()))
    return table, copied


def export_dataset(
    settings: WarehouseSettings,
    selection: DatasetFilter,
    *,
    name: str,
    out_dir: Path,
    download_dir: Path | None = None,
    reader: WarehouseReader | None = None,
    store: ObjectStore | None = None,
    show_progress: bool = True,
) -> ExportSummary:
    store = store or MinioStore.of(settings.s3)
    own_reader = reader is None
    if reader is None:
        reader = connect(settings)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        days = progress.add_task("select pairs, by day", total=len(selection.days()))
        try:
            table = select_pairs(reader, selection, lambda _: progress.advance(days))
        finally:
            if own_reader:
                reader.close()
        step = progress.add_task("write manifest", total=2)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        key = objectstore.dataset_key(name, selection.start, selection.end)
        local_path = out_dir / key.removeprefix("datasets/")
        local_path.parent.mkdir(parents=True, exist_ok=True)
        local_path.write_bytes(buffer.getvalue())
        progress.advance(step)
        store.put(key, buffer.getvalue(), "application/vnd.apache.parquet")
        progress.advance(step)
        downloaded = 0
        if download_dir is not None:
            with_paths, downloaded = download_pairs(table, store, download_dir, progress)
            download_dir.mkdir(parents=True, exist_ok=True)
            pq.write_table(with_paths, download_dir / "manifest.parquet")
    return ExportSummary(table.num_rows, local_path, store.bucket, key, downloaded)
