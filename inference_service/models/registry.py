"""Which model serves which task: loaded once at start-up, warmed up, then shared by every job."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from inference_service.errors import JobFailed, ModelLoadError, UnknownInference
from inference_service.images import RGB, Mask
from inference_service.models import classical
from inference_service.models.regions import RegionProposer
from inference_service.models.sam import Proposal, SamSegmenter
from inference_service.models.torchscript import TorchScriptModel, resolve_device
from inference_service.settings import InferenceConfig

log = logging.getLogger(__name__)

REMOVE_OBJECT = "remove_object"
ENHANCE = "enhance"
DEBLUR = "deblur"
SEGMENT = "segment"
RESTORE_TASKS = (REMOVE_OBJECT, ENHANCE, DEBLUR)


class RestorationModel(Protocol):
    @property
    def task(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def needs_mask(self) -> bool: ...

    def output_scale(self, params: Mapping[str, Any]) -> int:
        """How many times wider (and taller) the output is than the input; known before the image is decoded."""
        ...

    def run(self, image: RGB, mask: Mask | None, params: Mapping[str, Any]) -> RGB: ...


def _scale_of(params: Mapping[str, Any], default: int) -> int:
    scale = params.get("scale", default)
    if isinstance(scale, bool) or scale not in (2, 4):
        raise JobFailed("params.scale", f"must be 2 or 4, got {scale!r}")
    return int(scale)


def _sigma_of(params: Mapping[str, Any], default: float) -> float:
    sigma = params.get("sigma", default)
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 < sigma <= 20:
        raise JobFailed("params.sigma", f"must be a number in (0, 20], got {sigma!r}")
    return float(sigma)


def _required(mask: Mask | None) -> Mask:
    if mask is None:
        raise JobFailed("mask_key", "required for remove_object")
    return mask


@dataclass
class ClassicalModel:
    task: str
    name: str
    function: Callable[[RGB, Mask | None, Mapping[str, Any]], RGB]
    needs_mask: bool = False
    version: str = classical.CLASSICAL_VERSION
    device: str = "cpu"
    scale_of: Callable[[Mapping[str, Any]], int] = lambda _: 1

    def output_scale(self, params: Mapping[str, Any]) -> int:
        return self.scale_of(params)

    def run(self, image: RGB, mask: Mask | None, params: Mapping[str, Any]) -> RGB:
        return self.function(image, mask, params)


@dataclass
class TorchRestorationModel:
    task: str
    model: TorchScriptModel
    needs_mask: bool
    default_scale: int = 2

    @property
    def name(self) -> str:
        return f"torch-{self.model.path.stem}"

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def device(self) -> str:
        return str(self.model.device)

    def output_scale(self, params: Mapping[str, Any]) -> int:
        return _scale_of(params, self.default_scale) if self.task == ENHANCE else 1

    def run(self, image: RGB, mask: Mask | None, params: Mapping[str, Any]) -> RGB:
        if self.needs_mask:
            return self.model.restore(image, _required(mask))
        output = self.model.restore(image)
        if self.task == ENHANCE:
            scale = _scale_of(params, self.default_scale)
            expected = (image.shape[0] * scale, image.shape[1] * scale)
            if output.shape[:2] != expected:
                raise JobFailed("params.scale", f"model {self.name} upscales to {output.shape[:2]}, not ×{scale}")
        return output


def classical_models(config: InferenceConfig) -> dict[str, RestorationModel]:
    return {
        REMOVE_OBJECT: ClassicalModel(
            REMOVE_OBJECT, "opencv-telea", lambda image, mask, _: classical.inpaint_telea(image, _required(mask)), True
        ),
        ENHANCE: ClassicalModel(
            ENHANCE,
            "lanczos-unsharp",
            lambda image, _, params: classical.upscale_lanczos_unsharp(
                image, _scale_of(params, config.enhance_default_scale)
            ),
            scale_of=lambda params: _scale_of(params, config.enhance_default_scale),
        ),
        DEBLUR: ClassicalModel(
            DEBLUR,
            "wiener-gaussian",
            lambda image, _, params: classical.deconvolve_wiener(image, _sigma_of(params, config.deblur_default_sigma)),
        ),
    }


@dataclass(frozen=True, slots=True)
class ModelInfo:
    task: str
    name: str
    version: str
    device: str
    checkpoint: str | None
    load_s: float


class Segmenter(Protocol):
    """SAM, or the classical region proposer when no SAM checkpoint is configured."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def propose(
        self,
        image: RGB,
        points: list[tuple[float, float]] | None = None,
        box: tuple[float, float, float, float] | None = None,
    ) -> list[Proposal]: ...


class ModelRegistry:
    def __init__(
        self,
        restoration: dict[str, RestorationModel],
        segmenter: Segmenter,
        config: InferenceConfig,
        infos: list[ModelInfo],
    ) -> None:
        self.restoration = restoration
        self.segmenter = segmenter
        self.config = config
        self.infos = infos

    @classmethod
    def load(cls, config: InferenceConfig) -> ModelRegistry:
        """Load every configured model; a checkpoint that is set but unusable stops start-up."""
        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        device = resolve_device(config.device)
        restoration = classical_models(config)
        infos = []
        checkpoints = {
            REMOVE_OBJECT: config.remove_object_checkpoint,
            ENHANCE: config.enhance_checkpoint,
            DEBLUR: config.deblur_checkpoint,
        }
        for task, path in checkpoints.items():
            started = time.perf_counter()
            if path is not None:
                _exists(task, path)
                restoration[task] = TorchRestorationModel(
                    task,
                    TorchScriptModel(task, path, device),
                    needs_mask=task == REMOVE_OBJECT,
                    default_scale=config.enhance_default_scale,
                )
            model = restoration[task]
            infos.append(
                ModelInfo(task, model.name, model.version, model.device, _str(path), time.perf_counter() - started)
            )
        segmenter: Segmenter = RegionProposer(max_proposals=config.sam_max_proposals)
        if config.sam_checkpoint is None:
            infos.append(ModelInfo(SEGMENT, segmenter.name, segmenter.version, "cpu", None, 0.0))
        else:
            started = time.perf_counter()
            _exists(SEGMENT, config.sam_checkpoint)
            segmenter = SamSegmenter(
                config.sam_model_type,
                config.sam_checkpoint,
                device,
                points_per_side=config.sam_points_per_side,
                points_per_batch=config.sam_points_per_batch,
                pred_iou_thresh=config.sam_pred_iou_thresh,
                stability_score_thresh=config.sam_stability_score_thresh,
                max_proposals=config.sam_max_proposals,
            )
            infos.append(
                ModelInfo(
                    SEGMENT,
                    segmenter.name,
                    segmenter.version,
                    str(device),
                    str(config.sam_checkpoint),
                    time.perf_counter() - started,
                )
            )
        for info in infos:
            log.info("model loaded", extra={"task": info.task, "model": info.name, "version": info.version})
        registry = cls(restoration, segmenter, config, infos)
        if config.warmup:
            registry.warm_up()
        return registry

    def warm_up(self) -> None:
        """Run every model once so the first job does not pay for lazy initialisation."""
        image = np.full((64, 64, 3), 127, np.uint8)
        image[16:48, 16:48] = 200
        mask = np.zeros((64, 64), bool)
        mask[24:40, 24:40] = True
        for model in self.restoration.values():
            model.run(image, mask if model.needs_mask else None, {})
        self.segmenter.propose(image, points=[(32.0, 32.0)])

    def restoration_for(self, inference_id: int | None, inference_name: str | None) -> RestorationModel:
        """The job's inference_name when it names a task, else the task mapped to its inference_id."""
        if inference_name in self.restoration:
            return self.restoration[inference_name]
        task = self.config.inference_tasks.get(inference_id) if inference_id is not None else None
        if task is None or task not in self.restoration:
            raise UnknownInference(inference_id, inference_name, sorted(self.restoration))
        return self.restoration[task]

    def segment_model(self) -> Segmenter:
        return self.segmenter


def _exists(task: str, path: Path) -> None:
    if not path.is_file():
        raise ModelLoadError(task, str(path), "no such file")


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
