"""Region proposals for R-CNN and Fast R-CNN.

- :func:`fixed_proposals`: a seeded, deterministic set of multi-scale boxes, exactly ``count`` of
  them, that both detectors receive, so they do the same work on the same boxes in every run.
- :class:`SelectiveSearch`: the proposal method the papers timed (Uijlings et al., "fast" mode,
  as R-CNN used it), from OpenCV's contrib package. It runs on the CPU, as in the papers; the
  speed suite times it on the same image and adds its time to the with-proposals claims.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch

SELECTIVE_SEARCH_PACKAGE = "opencv-contrib-python-headless"
MIN_SIDE = 8  # pixels: smaller boxes are not objects anyone proposes


def fixed_proposals(height: int, width: int, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` boxes (x1, y1, x2, y2) in whole pixels inside a ``width`` x ``height`` image
    (``height``, ``width`` at least 8): sides drawn log-uniformly from 8 pixels to the image size
    at aspect ratios 1:2 to 2:1, centres uniform, then clipped to the image. The same arguments
    give the same boxes."""
    if count < 1:
        raise ValueError("count must be at least 1")
    gen = torch.Generator().manual_seed(seed)
    lo = torch.log(torch.tensor(float(MIN_SIDE)))
    hi = torch.log(torch.tensor(float(max(MIN_SIDE + 1, min(height, width)))))
    side = torch.exp(lo + (hi - lo) * torch.rand(count, generator=gen))
    aspect = torch.exp((torch.rand(count, generator=gen) - 0.5) * 2 * np.log(2.0))  # w / h
    w = (side * aspect.sqrt()).clamp(MIN_SIDE, width)
    h = (side / aspect.sqrt()).clamp(MIN_SIDE, height)
    cx = torch.rand(count, generator=gen) * width
    cy = torch.rand(count, generator=gen) * height
    # whole pixels, as selective search gives them
    x1 = (cx - w / 2).floor().clamp(0, width - MIN_SIDE)
    y1 = (cy - h / 2).floor().clamp(0, height - MIN_SIDE)
    x2 = torch.maximum(x1 + MIN_SIDE, (cx + w / 2).ceil().clamp(max=width))
    y2 = torch.maximum(y1 + MIN_SIDE, (cy + h / 2).ceil().clamp(max=height))
    return torch.stack([x1, y1, x2, y2], dim=1)


def selective_search_available() -> bool:
    """OpenCV with the contrib modules (cv2.ximgproc) is importable."""
    if importlib.util.find_spec("cv2") is None:
        return False
    import cv2

    return hasattr(cv2, "ximgproc") and hasattr(cv2.ximgproc, "segmentation")


class SelectiveSearch:
    """Selective search in fast mode on one RGB uint8 image; calling it returns the boxes
    (x1, y1, x2, y2) it proposes."""

    def __init__(self, image: np.ndarray) -> None:
        import cv2

        self._cv2: Any = cv2
        self.image = np.ascontiguousarray(image[..., ::-1])  # OpenCV wants BGR

    def __call__(self) -> np.ndarray:
        ss = self._cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        ss.setBaseImage(self.image)
        ss.switchToSelectiveSearchFast()
        rects = ss.process()  # (x, y, w, h)
        boxes = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return boxes
