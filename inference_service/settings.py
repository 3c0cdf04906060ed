"""Settings of the inference service; every variable is ``FS_INFERENCE__*`` (see .env.example)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from funnelstream.settings import ServiceSettings
from funnelstream.topics import GroupName, Topic, TopicName

SamModelType = Literal["vit_b", "vit_l", "vit_h", "tiny"]


class InferenceConfig(BaseModel):
    # Topics are settings so a deployment (or a test) can run on its own set.
    jobs_topic: TopicName = str(Topic.INFERENCE_JOBS)
    results_topic: TopicName = str(Topic.INFERENCE_RESULTS)
    events_topic: TopicName = str(Topic.EVENTS_RAW)
    dlq_topic: TopicName = str(Topic.EVENTS_DLQ)
    consumer_group: GroupName = "inference-service"

    max_in_flight: int = Field(default=2, ge=1, le=64)
    job_timeout_s: float = Field(default=120.0, gt=0)
    drain_timeout_s: float = Field(default=60.0, ge=0)
    produce_timeout_s: float = Field(default=30.0, gt=0)
    transient_retry_s: float = Field(default=60.0, ge=0)
    """How long a job keeps retrying an object store (or other dependency) that looks away; a restart of
    the store should cost latency, not failed jobs. Keep it below ``job_timeout_s``."""
    max_image_pixels: int = Field(default=16_000_000, ge=1)
    """Largest input (or mask) a job decodes, in pixels, read from the image's header before decoding."""
    max_output_pixels: int = Field(default=16_000_000, ge=1)
    """Largest image a job may produce (an enhance multiplies the input's pixels by its scale squared)."""
    max_input_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    """Largest stored input or mask a job reads; keep it at least the collector's ``max_upload_bytes``."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int | None = Field(default=None, ge=1)
    warmup: bool = True

    sam_model_type: SamModelType = "vit_b"
    sam_checkpoint: Path | None = None
    """Official SAM weights (sam_vit_b_01ec64.pth, ...). Unset: segment jobs fail with a clear reason."""
    sam_points_per_side: int = Field(default=32, ge=1, le=128)
    sam_points_per_batch: int = Field(default=64, ge=1)
    sam_pred_iou_thresh: float = Field(default=0.88, ge=0, le=1)
    sam_stability_score_thresh: float = Field(default=0.95, ge=0, le=1)
    sam_max_proposals: int = Field(default=64, ge=1, le=10_000)

    # A TorchScript file per task; unset: the classical default of that task.
    remove_object_checkpoint: Path | None = None
    enhance_checkpoint: Path | None = None
    deblur_checkpoint: Path | None = None
    enhance_default_scale: Literal[2, 4] = 2
    deblur_default_sigma: float = Field(default=2.0, gt=0, le=20)
    """Gaussian blur sigma (pixels) the classical deconvolution assumes unless a job says otherwise."""

    inference_tasks: dict[int, str] = Field(default_factory=lambda: {1: "remove_object", 2: "enhance", 3: "deblur"})
    """inference_id of the dimension table → task; used when a job's inference_name is not a task."""

    host: str = "127.0.0.1"
    port: int = Field(default=8200, ge=1, le=65535)


class InferenceSettings(ServiceSettings):
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
