"""What can go wrong with one inference job; each error says which job field or object is at fault."""

from __future__ import annotations

from funnelstream.errors import FunnelstreamError


class InferenceError(FunnelstreamError):
    """Root of the inference service's errors."""


class JobFailed(InferenceError):
    """The job cannot succeed as submitted: reported as failed, dead-lettered, never retried.

    ``field`` names the job field (or object) at fault so the reason can be read without logs.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class UndecodableJob(JobFailed):
    """The message on the jobs topic is not an InferenceJob."""


class InputMissing(JobFailed):
    def __init__(self, field: str, key: str) -> None:
        self.key = key
        super().__init__(field, f"object {key!r} not found in the bucket")


class CorruptImage(JobFailed):
    def __init__(self, field: str, key: str, detail: str) -> None:
        self.key = key
        super().__init__(field, f"object {key!r} is not a readable image: {detail}")


class InputTooLarge(JobFailed):
    def __init__(self, field: str, key: str, detail: str) -> None:
        self.key = key
        super().__init__(field, f"object {key!r} is too large: {detail}")


class OutputTooLarge(JobFailed):
    def __init__(self, width: int, height: int, scale: int, max_pixels: int) -> None:
        super().__init__(
            "params.scale",
            f"a {width}x{height} image ×{scale} would be {width * scale}x{height * scale} pixels, "
            f"over the output limit of {max_pixels}",
        )


class MaskMismatch(JobFailed):
    def __init__(self, image_size: tuple[int, int], mask_size: tuple[int, int]) -> None:
        self.image_size = image_size
        self.mask_size = mask_size
        super().__init__(
            "mask_key",
            f"mask is {mask_size[0]}x{mask_size[1]} but the image is {image_size[0]}x{image_size[1]} (width x height)",
        )


class UnknownInference(JobFailed):
    def __init__(self, inference_id: int | None, inference_name: str | None, known: list[str]) -> None:
        self.inference_id = inference_id
        self.inference_name = inference_name
        super().__init__(
            "inference_id",
            f"no model for inference_id={inference_id} inference_name={inference_name!r}; models: {', '.join(known)}",
        )


class JobTimedOut(JobFailed):
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__("job", f"did not finish within {timeout_s:g}s")


class JobAbandoned(InferenceError):
    """The worker gave up on the job (timeout, lost partition) while it ran; its output is not written."""


class ModelLoadError(InferenceError):
    """A configured model could not be loaded at start-up; the service refuses to start."""

    def __init__(self, task: str, path: str, detail: str) -> None:
        self.task = task
        self.path = path
        super().__init__(f"{task}: cannot load {path}: {detail}")
