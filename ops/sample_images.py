"""Small generated PNGs, and their upload, for real inference jobs in the demo and the failure tests."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
from PIL import Image


def sample_png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    cx, cy = int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height // 4, 3 * height // 4))
    image[(xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) // 8) ** 2] = (200, 40, 40)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def sample_mask_png(width: int, height: int) -> bytes:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = 255
    out = io.BytesIO()
    Image.fromarray(mask).save(out, format="PNG")
    return out.getvalue()


async def upload_image(
    collector: httpx.AsyncClient, body: bytes, anonymous_id: str, content_type: str = "image/png"
) -> dict[str, Any]:
    """Ask the collector for an upload for this device and post the bytes to the object store.

    Returns the ticket: its ``input_key`` and ``upload_token`` go with a job of the same ``anonymous_id``.
    """
    request = {"content_type": content_type, "anonymous_id": anonymous_id}
    ticket = (await collector.post("/v1/uploads", json=request)).raise_for_status().json()
    # Its own client: the collector's write key has no business in a request to the object store.
    async with httpx.AsyncClient(timeout=30) as store:
        # The policy's fields first, the file last, as S3 form uploads require.
        files = {"file": ("image", body, content_type)}
        (await store.post(ticket["upload_url"], data=ticket["fields"], files=files)).raise_for_status()
    return dict(ticket)
