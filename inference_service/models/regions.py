"""Classical region proposals: the Segmentation Tool's default when no SAM checkpoint is configured.

Colours are clustered (k-means in Lab space), each cluster is split into connected regions, and
regions of a plausible size become proposals, scored by how solid they are. A box prompt runs
GrabCut inside the box; point prompts return the regions under the points. Far weaker than SAM,
but it lets the product run end to end on any machine.
"""

from __future__ import annotations

import cv2
import numpy as np

from inference_service.images import RGB, Mask
from inference_service.models.sam import Proposal, _box_of

MIN_AREA_SHARE = 0.002
MAX_AREA_SHARE = 0.6


class RegionProposer:
    name = "opencv-regions"
    version = "classical-1"

    def __init__(self, clusters: int = 6, max_proposals: int = 64, seed: int = 0) -> None:
        self.clusters = clusters
        self.max_proposals = max_proposals
        self.seed = seed

    def propose(
        self,
        image: RGB,
        points: list[tuple[float, float]] | None = None,
        box: tuple[float, float, float, float] | None = None,
    ) -> list[Proposal]:
        if box is not None:
            proposals = self._grabcut(image, box)
        else:
            proposals = self._regions(image)
            if points:
                proposals = [p for p in proposals if _under_any(p.mask, points)]
        proposals.sort(key=lambda p: p.predicted_iou, reverse=True)
        return proposals[: self.max_proposals]

    def _regions(self, image: RGB) -> list[Proposal]:
        height, width = image.shape[:2]
        lab = cv2.cvtColor(cv2.GaussianBlur(image, (5, 5), 0), cv2.COLOR_RGB2LAB)
        samples = lab.reshape(-1, 3).astype(np.float32)
        cv2.setRNGSeed(self.seed)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
        clusters = min(self.clusters, max(1, len(np.unique(samples, axis=0))))
        best = np.zeros((samples.shape[0], 1), np.int32)
        _, found, _ = cv2.kmeans(samples, clusters, best, criteria, 3, cv2.KMEANS_PP_CENTERS)
        labels = np.asarray(found).reshape(height, width)
        total = height * width
        proposals = []
        for cluster in range(clusters):
            count, components, stats, _ = cv2.connectedComponentsWithStats(
                (labels == cluster).astype(np.uint8), connectivity=8
            )
            for component in range(1, count):
                area = int(stats[component, cv2.CC_STAT_AREA])
                if not MIN_AREA_SHARE * total <= area <= MAX_AREA_SHARE * total:
                    continue
                mask: Mask = components == component
                proposals.append(_proposal(mask, area))
        return proposals

    def _grabcut(self, image: RGB, box: tuple[float, float, float, float]) -> list[Proposal]:
        x0, y0, x1, y1 = (round(v) for v in box)
        height, width = image.shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width - 1, x1), min(height - 1, y1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return []
        state = np.zeros((height, width), np.uint8)
        background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(image, state, (x0, y0, x1 - x0, y1 - y0), background, foreground, 3, cv2.GC_INIT_WITH_RECT)
        mask = (state == cv2.GC_FGD) | (state == cv2.GC_PR_FGD)
        area = int(mask.sum())
        return [_proposal(mask, area)] if area else []


def _under_any(mask: Mask, points: list[tuple[float, float]]) -> bool:
    height, width = mask.shape
    return any(0 <= int(y) < height and 0 <= int(x) < width and bool(mask[int(y), int(x)]) for x, y in points)


def _proposal(mask: Mask, area: int) -> Proposal:
    # Solidity (area over convex hull area) stands in for SAM's predicted IoU: blobs beat slivers.
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_area = sum(cv2.contourArea(cv2.convexHull(c)) for c in contours) or float(area)
    return Proposal(
        mask=mask,
        box_xywh=_box_of(mask),
        area=area,
        predicted_iou=float(min(1.0, area / hull_area)),
        stability_score=None,
        point=None,
    )
