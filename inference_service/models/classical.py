"""The restoration models that run when no checkpoint is configured: classical, dependency-free, fast.

- ``opencv-telea``: Telea's fast-marching inpainting (OpenCV) fills the mask from its border inwards.
- ``lanczos-unsharp``: Lanczos-4 upscaling ×2/×4 followed by an unsharp mask that restores edge contrast
  the interpolation smooths away.
- ``wiener-gaussian``: Wiener deconvolution of a Gaussian point-spread function in the frequency domain,
  with reflected borders so the image edges do not ring.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from inference_service.images import RGB, Mask

CLASSICAL_VERSION = "classical-1"


def inpaint_telea(image: RGB, mask: Mask, radius: int = 5) -> RGB:
    if not mask.any():
        return image.copy()
    # Dilating by a pixel covers the anti-aliased rim of a brush stroke, which would otherwise bleed in.
    mask_u8 = cv2.dilate(mask.astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    return np.asarray(cv2.inpaint(image, mask_u8, radius, cv2.INPAINT_TELEA), dtype=np.uint8)


def upscale_lanczos_unsharp(image: RGB, scale: int, amount: float = 0.6, sigma: float = 1.0) -> RGB:
    height, width = image.shape[:2]
    upscaled = cv2.resize(image, (width * scale, height * scale), interpolation=cv2.INTER_LANCZOS4)
    blurred = cv2.GaussianBlur(upscaled, (0, 0), sigmaX=sigma * scale / 2)
    sharpened = cv2.addWeighted(upscaled, 1 + amount, blurred, -amount, 0)
    return np.asarray(sharpened, dtype=np.uint8)


def gaussian_psf(sigma: float) -> NDArray[np.float64]:
    radius = max(1, int(np.ceil(3 * sigma)))
    axis = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel_1d = np.exp(-(axis**2) / (2 * sigma**2))
    kernel: NDArray[np.float64] = np.outer(kernel_1d, kernel_1d)
    kernel /= kernel.sum()
    return kernel


def deconvolve_wiener(image: RGB, sigma: float, noise_to_signal: float = 0.005) -> RGB:
    psf = gaussian_psf(sigma)
    pad = psf.shape[0]
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101).astype(np.float32) / 255.0
    height, width = padded.shape[:2]
    # An FFT size with small prime factors is several times faster than an arbitrary one.
    fft_h, fft_w = cv2.getOptimalDFTSize(height), cv2.getOptimalDFTSize(width)
    kernel = np.zeros((fft_h, fft_w), np.float64)
    kernel[: psf.shape[0], : psf.shape[1]] = psf
    kernel = np.roll(kernel, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), axis=(0, 1))
    transfer = np.fft.rfft2(kernel)
    wiener = (np.conj(transfer) / (np.abs(transfer) ** 2 + noise_to_signal)).astype(np.complex64)
    restored = np.empty_like(padded)
    for channel in range(padded.shape[2]):
        spectrum = np.fft.rfft2(padded[:, :, channel], s=(fft_h, fft_w))
        restored[:, :, channel] = np.fft.irfft2(spectrum * wiener, s=(fft_h, fft_w))[:height, :width]
    cropped = restored[pad:-pad, pad:-pad]
    return np.asarray(np.clip(cropped * 255.0 + 0.5, 0, 255), dtype=np.uint8)
