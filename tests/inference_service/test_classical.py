"""The defaults that run without checkpoints, checked for what a user would look at."""

from __future__ import annotations

import cv2
import numpy as np

from inference_service.models.classical import deconvolve_wiener, inpaint_telea, upscale_lanczos_unsharp


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian: the usual focus measure."""
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def textured(size: int, seed: int = 3) -> np.ndarray:
    """Ground truth with detail at several scales, like a photo."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (size // 8, size // 8, 3))
    base = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    y, x = np.mgrid[0:size, 0:size] / size
    stripes = np.sin(40 * x + 25 * y)[..., None]
    image = 128 + 45 * base + 35 * stripes
    return np.clip(image, 0, 255).astype(np.uint8)


def test_inpainting_fills_the_mask_with_its_surroundings() -> None:
    background = np.zeros((128, 160, 3), np.uint8)
    background[:] = (40, 120, 200)
    image = background.copy()
    mask = np.zeros((128, 160), bool)
    mask[40:80, 50:110] = True
    image[mask] = (255, 0, 0)  # the object to remove

    result = inpaint_telea(image, mask)

    filled = result[mask].astype(int)
    assert np.abs(filled - background[mask].astype(int)).max() <= 8
    assert np.array_equal(result[~mask][:, 0] > 200, np.zeros((~mask).sum(), bool)), "no red left outside"


def test_inpainting_continues_a_gradient_across_the_hole() -> None:
    ramp = np.tile(np.linspace(0, 255, 200, dtype=np.float64), (100, 1))
    background = np.stack([ramp, ramp, ramp], -1).astype(np.uint8)
    image = background.copy()
    mask = np.zeros((100, 200), bool)
    mask[40:60, 90:110] = True
    image[mask] = 0

    result = inpaint_telea(image, mask)

    error = np.abs(result[mask].astype(int) - background[mask].astype(int))
    assert error.mean() < 6


def test_inpainting_without_mask_pixels_returns_the_image() -> None:
    image = textured(64)
    assert np.array_equal(inpaint_telea(image, np.zeros((64, 64), bool)), image)


def test_deconvolution_sharpens_a_blurred_test_pattern() -> None:
    checker = ((np.indices((192, 192)).sum(0) // 12) % 2 * 190 + 30).astype(np.uint8)
    pattern = np.repeat(checker[..., None], 3, axis=2)
    blurred = cv2.GaussianBlur(pattern, (0, 0), 2.0)

    restored = deconvolve_wiener(blurred, sigma=2.0)

    assert restored.shape == pattern.shape and restored.dtype == np.uint8
    assert sharpness(restored) > 3 * sharpness(blurred)
    assert psnr(restored, pattern) > psnr(blurred, pattern) + 1.0


def test_enhance_doubles_the_size_and_beats_nearest_neighbour() -> None:
    truth = textured(256)
    low = cv2.resize(truth, (128, 128), interpolation=cv2.INTER_AREA)

    enhanced = upscale_lanczos_unsharp(low, 2)
    nearest = cv2.resize(low, (256, 256), interpolation=cv2.INTER_NEAREST)

    assert enhanced.shape == (256, 256, 3)
    assert psnr(enhanced, truth) > psnr(nearest, truth) + 0.5


def test_enhance_by_four() -> None:
    truth = textured(256, seed=5)
    low = cv2.resize(truth, (64, 64), interpolation=cv2.INTER_AREA)

    enhanced = upscale_lanczos_unsharp(low, 4)
    nearest = cv2.resize(low, (256, 256), interpolation=cv2.INTER_NEAREST)

    assert enhanced.shape == (256, 256, 3)
    assert psnr(enhanced, truth) > psnr(nearest, truth)
