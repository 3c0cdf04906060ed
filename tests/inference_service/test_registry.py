"""Models load once through the registry's real code path: SAM from a checkpoint, TorchScript, defaults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference_service.errors import JobFailed, ModelLoadError, UnknownInference
from inference_service.models.registry import DEBLUR, ENHANCE, REMOVE_OBJECT, SEGMENT, ModelRegistry
from inference_service.settings import InferenceConfig
from tests.helpers.images import scene
from tests.helpers.inference import sam_config


def test_without_checkpoints_the_classical_defaults_serve_every_restoration_task() -> None:
    registry = ModelRegistry.load(InferenceConfig(device="cpu"))

    names = {info.task: info.name for info in registry.infos}
    assert names == {
        REMOVE_OBJECT: "opencv-telea",
        ENHANCE: "lanczos-unsharp",
        DEBLUR: "wiener-gaussian",
        "segment": "opencv-regions",
    }
    assert registry.segment_model().name == "opencv-regions"


def test_inference_ids_of_the_seed_dimensions_map_to_tasks() -> None:
    registry = ModelRegistry.load(InferenceConfig(device="cpu", warmup=False))

    assert registry.restoration_for(1, None).task == REMOVE_OBJECT
    assert registry.restoration_for(2, None).task == ENHANCE
    assert registry.restoration_for(3, None).task == DEBLUR
    assert registry.restoration_for(99, "deblur").task == DEBLUR, "a task name wins over an unknown id"
    with pytest.raises(UnknownInference, match="inference_id=99"):
        registry.restoration_for(99, "colorize")


def test_tiny_sam_loads_from_its_checkpoint_and_proposes_masks(tiny_sam_checkpoint: Path) -> None:
    registry = ModelRegistry.load(sam_config(tiny_sam_checkpoint))
    segmenter = registry.segment_model()
    assert segmenter.name == "sam-tiny"
    assert len(segmenter.version) == 12
    loaded = torch.load(tiny_sam_checkpoint, weights_only=True)
    for name, tensor in segmenter.sam.state_dict().items():
        assert torch.equal(tensor, loaded[name]), f"{name} is not the checkpoint's"

    image = scene()
    proposals = segmenter.propose(image)

    assert proposals, "the automatic mask generator kept no proposal"
    for proposal in proposals:
        assert proposal.mask.shape == image.shape[:2]
        assert proposal.area == int(proposal.mask.sum())
        assert 0 <= proposal.box_xywh[0] < image.shape[1] and 0 <= proposal.box_xywh[1] < image.shape[0]
    ious = [p.predicted_iou for p in proposals]
    assert ious == sorted(ious, reverse=True)


def test_tiny_sam_answers_points_and_a_box(tiny_sam_checkpoint: Path) -> None:
    segmenter = ModelRegistry.load(sam_config(tiny_sam_checkpoint, warmup=False)).segment_model()
    image = scene()

    by_point = segmenter.propose(image, points=[(50.0, 40.0)])
    by_box = segmenter.propose(image, box=(30.0, 20.0, 80.0, 70.0))

    assert len(by_point) == 3 and len(by_box) == 3, "multimask output: three candidates each"
    assert all(p.mask.shape == image.shape[:2] for p in by_point + by_box)


def test_a_checkpoint_of_another_architecture_is_refused_at_start(tiny_sam_checkpoint: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a vit_b SAM state dict"):
        ModelRegistry.load(sam_config(tiny_sam_checkpoint, sam_model_type="vit_b"))


def test_a_missing_checkpoint_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        ModelRegistry.load(InferenceConfig(device="cpu", deblur_checkpoint=tmp_path / "nope.pt"))


class _Invert(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return 1.0 - image


class _FillMask(torch.nn.Module):
    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return image * (1 - mask) + mask * 0.5


class _Upscale2(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(image, scale_factor=2.0, mode="bilinear")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_configured_torchscript_checkpoint_replaces_the_default(tmp_path: Path) -> None:
    for name, module in {"invert": _Invert(), "fill": _FillMask(), "up2": _Upscale2()}.items():
        torch.jit.script(module).save(str(tmp_path / f"{name}.pt"))
    registry = ModelRegistry.load(
        InferenceConfig(
            device="cpu",
            deblur_checkpoint=tmp_path / "invert.pt",
            remove_object_checkpoint=tmp_path / "fill.pt",
            enhance_checkpoint=tmp_path / "up2.pt",
        )
    )
    image = scene(32, 48)
    mask = np.zeros((32, 48), bool)
    mask[8:16, 8:16] = True

    deblur = registry.restoration_for(3, None)
    assert deblur.name == "torch-invert" and deblur.version != "classical-1"
    assert np.abs(deblur.run(image, None, {}).astype(int) - (255 - image.astype(int))).max() <= 1

    filled = registry.restoration_for(1, None).run(image, mask, {})
    assert np.all(np.abs(filled[mask].astype(int) - 128) <= 1)
    assert np.array_equal(filled[~mask], image[~mask])

    enhance = registry.restoration_for(2, None)
    assert enhance.run(image, None, {"scale": 2}).shape == (64, 96, 3)
    with pytest.raises(JobFailed, match=r"params\.scale"):
        enhance.run(image, None, {"scale": 4})


def test_bad_parameters_name_the_field() -> None:
    registry = ModelRegistry.load(InferenceConfig(device="cpu", warmup=False))
    image = scene(16, 16)
    with pytest.raises(JobFailed, match=r"params\.scale"):
        registry.restoration_for(2, None).run(image, None, {"scale": 3})
    with pytest.raises(JobFailed, match=r"params\.sigma"):
        registry.restoration_for(3, None).run(image, None, {"sigma": "big"})
    with pytest.raises(JobFailed, match="mask_key"):
        registry.restoration_for(1, None).run(image, None, {})


def test_segment_task_is_reported_in_the_model_list(tiny_sam_checkpoint: Path) -> None:
    registry = ModelRegistry.load(sam_config(tiny_sam_checkpoint, warmup=False))
    assert {info.task for info in registry.infos} == {REMOVE_OBJECT, ENHANCE, DEBLUR, SEGMENT}


def test_a_torch_export_checkpoint_with_dynamic_size_serves_any_image(tmp_path: Path) -> None:
    height, width = torch.export.Dim("height", min=8, max=8192), torch.export.Dim("width", min=8, max=8192)
    program = torch.export.export(
        _Invert(), (torch.rand(1, 3, 32, 48),), dynamic_shapes={"image": {2: height, 3: width}}
    )
    torch.export.save(program, str(tmp_path / "invert.pt2"))
    model = ModelRegistry.load(
        InferenceConfig(device="cpu", deblur_checkpoint=tmp_path / "invert.pt2")
    ).restoration_for(3, None)
    image = scene(20, 30)
    assert model.name == "torch-invert"
    assert np.abs(model.run(image, None, {}).astype(int) - (255 - image.astype(int))).max() <= 1
