from __future__ import annotations

import hashlib
import io
import mimetypes
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from funnelstream.contract import InferenceJob, JobKind
from inference_service.store import ObjectNotFound, ObjectTooLarge, StoredObject


class MemoryStore:
    """The object store boundary, in memory, for the processing tests.

    An object set straight into ``objects`` has the content type its key's extension names, as if
    uploaded under the policy of its key; ``content_types`` overrides it.
    """

    def __init__(self, bucket: str = "test-bucket") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.puts = 0

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise ObjectNotFound(key)
        return self.objects[key]

    def read(self, key: str, max_bytes: int) -> StoredObject:
        data = self.get(key)
        if len(data) > max_bytes:
            raise ObjectTooLarge(key, len(data), max_bytes)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return StoredObject(data, self.content_types.get(key) or mimetypes.guess_type(key)[0], etag)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.puts += 1
        self.objects[key] = data
        self.content_types[key] = content_type


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def read_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def scene(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth background with a bright square: something for a model to work on."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack(
        [100 + 60 * np.sin(x / 9.0), 120 + 50 * np.cos(y / 7.0), 140 + 40 * np.sin((x + y) / 11.0)], -1
    ).astype(np.uint8)
    image[height // 3 : height // 3 + 20, width // 3 : width // 3 + 20] = (250, 30, 30)
    return image


def make_job(
    *,
    kind: JobKind = JobKind.RESTORE,
    inference_id: int | None = 2,
    inference_name: str | None = None,
    input_key: str = "inputs/2026/01/02/in.png",
    mask_key: str | None = None,
    anonymous_id: str = "device-1",
    submitted_at: datetime = datetime(2026, 1, 2, 10, 0, tzinfo=UTC),
    **extra: object,
) -> InferenceJob:
    return InferenceJob(
        job_id=uuid.uuid4(),
        kind=kind,
        input_id=uuid.uuid4(),
        input_key=input_key,
        anonymous_id=anonymous_id,
        inference_id=inference_id if kind is JobKind.RESTORE else None,
        inference_name=inference_name,
        mask_key=mask_key,
        submitted_at=submitted_at,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SAM of the ``tiny`` type with random weights, saved as an ordinary state-dict checkpoint."""
    from functools import partial

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(7)
    # Built here from segment-anything's modules, not by the service, so loading checks the service's
    # idea of the "tiny" layout against an independent one.
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=2,
            embed_dim=32,
            img_size=256,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=2,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=(1,),
            window_size=4,
            out_chans=32,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=32, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
            transformer_dim=32,
            iou_head_depth=3,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    path = tmp_path_factory.mktemp("sam") / "sam_tiny_random.pth"
    torch.save(sam.state_dict(), path)
    return path
