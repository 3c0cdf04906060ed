"""Image bytes in and out. Everything inside the service is RGB ``uint8`` (H, W, 3) or a bool mask (H, W).

Invariant: nothing is decoded before its header is checked: a format uploads may have (PNG, JPEG,
WebP), the one its stored content type names, and a size within the input and output pixel limits.
A small file can declare a huge image, so the size is read from the header, never found by decoding.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from inference_service.errors import CorruptImage, JobFailed, OutputTooLarge

RGB = NDArray[np.uint8]
Mask = NDArray[np.bool_]

IMAGE_FORMATS: dict[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
"""Pillow's formats that uploads may have, with their content types (those POST /v1/uploads offers)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one decode may cost: input pixels, and output pixels for an output ``scale`` times as wide."""

    max_pixels: int
    max_output_pixels: int | None = None
    scale: int = 1


def _open(data: bytes, field: str, key: str, limits: Limits, content_type: str | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; ours is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Only the formats uploads may have: Pillow's other decoders are attack surface we never need.
            image = Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
            stated = IMAGE_FORMATS[str(image.format)]
            if content_type is not None and content_type != stated:
                raise CorruptImage(field, key, f"a {image.format} image stored as {content_type!r}")
            width, height = image.size
            if width * height > limits.max_pixels:
                raise CorruptImage(field, key, f"{width}x{height} exceeds the limit of {limits.max_pixels} pixels")
            scale = limits.scale
            if limits.max_output_pixels is not None and width * height * scale * scale > limits.max_output_pixels:
                raise OutputTooLarge(width, height, scale, limits.max_output_pixels)
            image.load()
    except JobFailed:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImage(field, key, str(exc) or type(exc).__name__) from None
    return image


def decode_image(data: bytes, *, field: str, key: str, limits: Limits, content_type: str | None = None) -> RGB:
    image = _open(data, field, key, limits, content_type)
    if image.mode != "RGB":
        # Transparent pixels become white, which is what a browser shows behind them.
        if "A" in image.getbands() or image.mode == "P":
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def decode_mask(data: bytes, *, field: str, key: str, limits: Limits, content_type: str | None = None) -> Mask:
    """Any non-black pixel (or, with an alpha channel, any opaque one) is part of the mask."""
    image = _open(data, field, key, limits, content_type)
    channel = np.asarray(image.getchannel("A") if "A" in image.getbands() else image.convert("L"))
    return channel > 0


def encode_png(image: RGB | Mask) -> bytes:
    # OpenCV's encoder is faster than Pillow's at the same size, and level 1 trades a little size
    # for speed: this service writes every result it makes.
    as_bytes = image.astype(np.uint8, copy=False)
    pixels = as_bytes * 255 if image.dtype == np.bool_ else cv2.cvtColor(as_bytes, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image.shape}")
    return encoded.tobytes()
