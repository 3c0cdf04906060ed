"""Restoration models from an exported checkpoint: ``torch.export`` (``.pt2``) or TorchScript (any other name).

The interface a checkpoint must follow (the one LaMa's and most SR exports use): RGB in ``[0, 1]`` as a
float tensor ``(1, 3, H, W)``; inpainting models take the mask ``(1, 1, H, W)`` (1 = fill) as a second
argument; the output is ``(1, 3, H', W')`` in ``[0, 1]``. Super-resolution models say their scale by
the output size; the job's requested scale must match it.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference_service.errors import JobFailed, ModelLoadError
from inference_service.images import RGB, Mask


def checkpoint_version(path: Path) -> str:
    """A checkpoint's version is its content: the same file gives the same version on every host."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device", "cuda", "FS_INFERENCE__DEVICE=cuda but torch sees no CUDA device")
    return torch.device(requested)


def _to_tensor(image: RGB, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(image).to(device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def _to_image(tensor: torch.Tensor) -> RGB:
    array = tensor.squeeze(0).clamp(0, 1).mul(255.0).add(0.5).byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(array)


def _load_module(path: Path, device: torch.device) -> Callable[..., Any]:
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module().to(device)
    with warnings.catch_warnings():
        # Deprecated in favour of torch.export, yet most published restoration models ship as TorchScript.
        warnings.simplefilter("ignore", FutureWarning)
        module: Callable[..., Any] = torch.jit.load(str(path), map_location=device).eval()  # type: ignore[no-untyped-call]
        return module


class TorchScriptModel:
    def __init__(self, task: str, path: Path, device: torch.device) -> None:
        self.task = task
        self.path = path
        self.device = device
        try:
            self.module = _load_module(path, device)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(task, str(path), str(exc)) from exc
        self.version = checkpoint_version(path)
        # One forward at a time: a GPU has one memory budget, and CPU kernels already use every core.
        self._lock = threading.Lock()

    def restore(self, image: RGB, mask: Mask | None = None) -> RGB:
        with self._lock, torch.inference_mode():
            inputs = [_to_tensor(image, self.device)]
            if mask is not None:
                inputs.append(torch.from_numpy(mask).to(self.device).float()[None, None])
            output = self.module(*inputs)
        if not isinstance(output, torch.Tensor) or output.dim() != 4 or output.shape[1] != 3:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise JobFailed("model", f"{self.task} model returned {shape}; expected a (1, 3, H, W) tensor")
        return _to_image(output)
