"""Segment Anything: automatic proposals, or masks for the user's points and box.

Official checkpoints are built with segment-anything's own ``sam_model_registry`` builders (vit_b,
vit_l, vit_h). ``tiny`` is the same architecture shrunk (a 256 px, two-block encoder) built from the
same modules, for smoke runs and tests; every type goes through the same checkpoint loading code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from inference_service.errors import ModelLoadError
from inference_service.images import RGB, Mask
from inference_service.models.torchscript import checkpoint_version


@dataclass(frozen=True, slots=True)
class SamArchitecture:
    image_size: int
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    prompt_embed_dim: int
    decoder_mlp_dim: int
    decoder_num_heads: int
    window_size: int = 14


TINY_SAM = SamArchitecture(
    image_size=256,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    window_size=4,
)
CUSTOM_ARCHITECTURES = {"tiny": TINY_SAM}
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]


def build_custom_sam(arch: SamArchitecture) -> Sam:
    """The layout of segment-anything's ``_build_sam`` with every size a parameter."""
    patch_size = 16
    embedding_size = arch.image_size // patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=arch.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.encoder_global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=arch.prompt_embed_dim,
        ),
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
    )
    return sam.eval()


def build_sam(model_type: str) -> Sam:
    """An untrained SAM of ``model_type``; weights come from :func:`load_sam`."""
    if model_type in CUSTOM_ARCHITECTURES:
        return build_custom_sam(CUSTOM_ARCHITECTURES[model_type])
    if model_type not in sam_model_registry:
        known = sorted({*sam_model_registry, *CUSTOM_ARCHITECTURES})
        raise ModelLoadError("segment", model_type, f"unknown SAM model type; expected one of {known}")
    sam: Sam = sam_model_registry[model_type](checkpoint=None)
    return sam


def load_sam(model_type: str, checkpoint: Path, device: torch.device) -> Sam:
    sam = build_sam(model_type)
    try:
        # weights_only: a checkpoint is data; it must not be able to run code when loaded.
        state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
        sam.load_state_dict(state_dict)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise ModelLoadError("segment", str(checkpoint), f"not a {model_type} SAM state dict: {exc}") from exc
    return sam.to(device).eval()


@dataclass(frozen=True, slots=True)
class Proposal:
    mask: Mask
    box_xywh: tuple[float, float, float, float]
    area: int
    predicted_iou: float
    stability_score: float | None
    point: tuple[float, float] | None

    def describe(self) -> dict[str, Any]:
        return {
            "box": list(self.box_xywh),
            "area": self.area,
            "predicted_iou": round(self.predicted_iou, 5),
            "stability_score": None if self.stability_score is None else round(self.stability_score, 5),
            "point": None if self.point is None else list(self.point),
        }


def _box_of(mask: Mask) -> tuple[float, float, float, float]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1))


class SamSegmenter:
    """One loaded SAM shared by the automatic generator and the prompt predictor."""

    def __init__(
        self,
        model_type: str,
        checkpoint: Path,
        device: torch.device,
        *,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        max_proposals: int = 64,
    ) -> None:
        self.model_type = model_type
        self.device = device
        self.sam = load_sam(model_type, checkpoint, device)
        self.version = checkpoint_version(checkpoint)
        self.max_proposals = max_proposals
        self.generator = SamAutomaticMaskGenerator(
            self.sam,
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
        )
        self.predictor = SamPredictor(self.sam)
        # Both hold the embedding of "the current image": one job at a time.
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"sam-{self.model_type}"

    def propose(
        self,
        image: RGB,
        points: list[tuple[float, float]] | None = None,
        box: tuple[float, float, float, float] | None = None,
    ) -> list[Proposal]:
        """Prompted masks when the user gave points or a box (xyxy), else automatic ones, best first."""
        with self._lock, torch.inference_mode():
            if points or box is not None:
                proposals = self._prompted(image, points or [], box)
            else:
                proposals = self._automatic(image)
        proposals.sort(key=lambda p: p.predicted_iou, reverse=True)
        return proposals[: self.max_proposals]

    def _automatic(self, image: RGB) -> list[Proposal]:
        records = self.generator.generate(image)
        return [
            Proposal(
                mask=np.asarray(record["segmentation"], dtype=bool),
                box_xywh=tuple(float(v) for v in record["bbox"]),  # type: ignore[arg-type]
                area=int(record["area"]),
                predicted_iou=float(record["predicted_iou"]),
                stability_score=float(record["stability_score"]),
                point=tuple(float(v) for v in record["point_coords"][0]),  # type: ignore[arg-type]
            )
            for record in records
        ]

    def _prompted(
        self, image: RGB, points: list[tuple[float, float]], box: tuple[float, float, float, float] | None
    ) -> list[Proposal]:
        self.predictor.set_image(image)
        point_coords = np.asarray(points, dtype=np.float32) if points else None
        point_labels = np.ones(len(points), dtype=np.int64) if points else None
        masks, scores, _ = self.predictor.predict(
            point_coords=point_coords,
            point_labels=point_labels,
            box=np.asarray(box, dtype=np.float32) if box is not None else None,
            multimask_output=True,
        )
        self.predictor.reset_image()
        return [
            Proposal(
                mask=mask.astype(bool),
                box_xywh=_box_of(mask),
                area=int(mask.sum()),
                predicted_iou=float(score),
                stability_score=None,
                point=None,
            )
            for mask, score in zip(masks, scores, strict=True)
        ]
