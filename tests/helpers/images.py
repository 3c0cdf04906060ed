"""Images for the inference and dataset tests: a synthetic scene, and PNG bytes to and from arrays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


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
