"""Small generated PNGs for real inference jobs in the demo and the failure tests."""

from __future__ import annotations

import io

import numpy as np


def sample_png(width: int, height: int, seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    cx, cy = int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height // 4, 3 * height // 4))
    image[(xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) // 8) ** 2] = (200, 40, 40)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def sample_mask_png(width: int, height: int) -> bytes:
    from PIL import Image

    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = 255
    out = io.BytesIO()
    Image.fromarray(mask).save(out, format="PNG")
    return out.getvalue()
