"""Image bytes in and out. Everything inside the service is RGB ``uint8`` (H, W, 3) or a bool mask (H, W)."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from inference_service.errors import CorruptImage

RGB = NDArray[np.uint8]
Mask = NDArray[np.bool_]


def _open(data: bytes, field: str, key: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; ours is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise CorruptImage(field, key, f"{width}x{height} exceeds the limit of {max_pixels} pixels")
            image.load()
    except CorruptImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImage(field, key, str(exc) or type(exc).__name__) from None
    return image


def decode_image(data: bytes, *, field: str, key: str, max_pixels: int) -> RGB:
    image = _open(data, field, key, max_pixels)
    if image.mode != "RGB":
        # Transparent pixels become white, which is what a browser shows behind them.
        if "A" in image.getbands() or image.mode == "P":
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def decode_mask(data: bytes, *, field: str, key: str, max_pixels: int) -> Mask:
    """Any non-black pixel (or, with an alpha channel, any opaque one) is part of the mask."""
    image = _open(data, field, key, max_pixels)
    channel = np.asarray(image.getchannel("A") if "A" in image.getbands() else image.convert("L"))
    return channel > 0


def encode_png(image: RGB | Mask) -> bytes:
    # OpenCV's encoder is about twice as fast as Pillow's at the same size; level 1 trades a few
    # percent of size for speed, which is what a service that writes every result wants.
    as_bytes = image.astype(np.uint8, copy=False)
    pixels = as_bytes * 255 if image.dtype == np.bool_ else cv2.cvtColor(as_bytes, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image.shape}")
    return encoded.tobytes()
