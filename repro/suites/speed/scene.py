"""One deterministic synthetic test image for the detectors' timings.

Timing needs no real photograph, but selective search does need structure: on uniform noise it
finds no regions worth merging, on a flat image almost none. The scene is a smooth background
with overlapping flat and striped rectangles and ellipses plus mild noise; at 500 x 375 selective
search ("fast" mode) returns about 2,000 boxes on it, the count R-CNN reports for VOC images.
"""

from __future__ import annotations

import numpy as np
import torch

SHAPES = 40


def synthetic_scene(height: int, width: int, seed: int = 0, shapes: int = SHAPES) -> np.ndarray:
    """An RGB uint8 image of shape (height, width, 3), the same for the same arguments."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack(
        [
            60 + 100 * xx / width,
            80 + 80 * yy / height,
            120 + 60 * np.sin(xx / 37.0) * np.cos(yy / 23.0),
        ],
        axis=-1,
    )
    for i in range(shapes):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        a, b = rng.uniform(8, max(9, width / 3)), rng.uniform(8, max(9, height / 3))
        colour = rng.uniform(0, 255, 3)
        if i % 2:
            mask = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
        else:
            mask = (np.abs(xx - cx) <= a / 2) & (np.abs(yy - cy) <= b / 2)
        if i % 3 == 0:
            freq = rng.uniform(0.1, 0.5)
            stripes = np.sin(xx * freq + yy * freq * rng.uniform(-1, 1)) > 0
            img[mask] = np.where(stripes[mask][:, None], colour, colour * 0.5)
        else:
            img[mask] = colour
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def scene_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """The image as a float (3, H, W) tensor in [0, 1], torchvision's detection input."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255).contiguous().to(device)
