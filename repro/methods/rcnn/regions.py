"""R-CNN's regions (Girshick et al. 2014): selective-search proposals cached per split, the
labels of each window by its overlap with the ground truth, and the warped 227x227 windows.

Boxes are 0-based pixel-edge xyxy throughout, as ``repro.data.voc.VocDetection`` returns them
and as OpenCV's selective search gives them ((x, y, w, h) -> (x, y, x + w, y + h)).

Proposals: selective search in fast mode (OpenCV contrib), exact duplicate boxes removed (the
original selective search code removes them too), in the order OpenCV ranks them. They are cached
in ``<cache_dir>/proposals.npz`` keyed by image id (saved every ``SAVE_EVERY`` images, so an
interrupted run keeps its work), and a second run reuses them. Images that do not decode are
counted, logged and left out (never cached, never fatal).
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou, roi_align
from tqdm import tqdm

from repro.data.voc import VocDetection, load_image_tensor
from repro.errors import DataError, ReproError
from repro.methods.rcnn.detector import CONTEXT_PAD, caffe_pixels, context_boxes
from repro.methods.region_proposals import SELECTIVE_SEARCH_PACKAGE, SelectiveSearch
from repro.methods.region_proposals import selective_search_available as _available

log = logging.getLogger("repro.accuracy")

PROPOSALS_FILE = "proposals.npz"
SAVE_EVERY = 250  # images between cache saves
FG_IOU = 0.5  # fine-tuning: a window this close to a ground truth is a positive of its class
SVM_NEGATIVE_IOU = 0.3  # SVMs: a window below this to every box of a class is a negative
REFERENCE_CROP = 227  # CONTEXT_PAD (16 px) is given at AlexNet's 227x227 input


def proposal_base(storage: str | Path) -> Path:
    """Where proposal caches live under the accuracy suite's storage folder."""
    return Path(storage).expanduser() / "rcnn-proposals"


def proposal_cache_dir(base: Path, dataset: str, root: str | Path, split: str) -> Path:
    """``<base>/<dataset>-<split>-<hash of root>``: the root's hash keeps two copies of a
    dataset (e.g. a synthetic one and the real one) from sharing proposals."""
    digest = hashlib.sha1(str(Path(root).expanduser().resolve()).encode()).hexdigest()[:8]
    return base / f"{dataset}-{split}-{digest}"


def require_selective_search() -> None:
    if not _available():
        raise ReproError(
            "selective search needs OpenCV's contrib modules (cv2.ximgproc), not installed.",
            f"pip install {SELECTIVE_SEARCH_PACKAGE} (in place of opencv-python).",
        )


def read_image(path: Path) -> torch.Tensor | None:
    """The image as a uint8 (3, H, W) tensor, or None (logged) when it does not decode."""
    try:
        image = load_image_tensor(path)
    except DataError as exc:
        log.warning("corrupt-image: %s", exc.cause)
        return None
    return image.mul(255).round_().to(torch.uint8)


def selective_search(image: np.ndarray) -> np.ndarray:
    """Fast-mode selective search on an RGB uint8 (H, W, 3) image: (N, 4) float32 boxes,
    duplicates removed, in OpenCV's order."""
    boxes = SelectiveSearch(image)()
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def _propose(path: Path) -> np.ndarray | None:
    image = read_image(path)
    if image is None:
        return None
    return selective_search(image.permute(1, 2, 0).numpy())


@dataclass
class Proposals:
    """Boxes per image id, and the image files that did not decode."""

    boxes: dict[str, np.ndarray]
    corrupt: list[str] = field(default_factory=list)
    computed: int = 0  # images selective search ran on in this call (0: all from the cache)


def _load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        log.warning("%s is unreadable (%s); its proposals are computed again", path, exc)
        return {}


def _save_cache(path: Path, boxes: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial.npz")
    np.savez(partial, **boxes)
    os.replace(partial, path)


def load_proposals(
    items: Sequence[tuple[str, Path]],
    cache_dir: Path | None,
    processes: int | None = None,
    desc: str = "selective search",
) -> Proposals:
    """Proposals of every (image id, image path) in ``items``: from ``cache_dir`` where cached,
    else by selective search (``processes`` > 1: in that many processes), then cached."""
    cache = cache_dir / PROPOSALS_FILE if cache_dir is not None else None
    stored = _load_cache(cache) if cache is not None else {}
    todo = [(i, p) for i, p in items if i not in stored]
    result = Proposals({i: stored[i] for i, _ in items if i in stored})
    if not todo:
        return result
    require_selective_search()
    workers = min(processes or os.cpu_count() or 1, len(todo))
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        found = pool.map(_propose, [p for _, p in todo], chunksize=4) if pool else None
        done = found if found is not None else (_propose(p) for _, p in todo)
        bar = tqdm(zip(todo, done, strict=True), total=len(todo), desc=desc, unit="image")
        for n, ((image_id, path), boxes) in enumerate(bar, 1):
            if boxes is None:
                result.corrupt.append(str(path))
                continue
            stored[image_id] = result.boxes[image_id] = boxes
            result.computed += 1
            if cache is not None and n % SAVE_EVERY == 0:
                _save_cache(cache, stored)
    finally:
        if pool is not None:
            pool.shutdown()
    if cache is not None and result.computed:
        _save_cache(cache, stored)
    return result


def finetune_labels(
    windows: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor
) -> torch.Tensor:
    """Fine-tuning labels: 1 + the class of the ground truth a window overlaps most when that
    IoU is >= 0.5, else 0 (background)."""
    if len(gt_boxes) == 0 or len(windows) == 0:
        return torch.zeros(len(windows), dtype=torch.int64)
    best, which = box_iou(windows, gt_boxes).max(dim=1)
    return torch.where(best >= FG_IOU, gt_labels[which] + 1, 0)


def svm_negatives(
    windows: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, cls: int
) -> torch.Tensor:
    """Windows that are negatives of class ``cls`` for its SVM: IoU < 0.3 to every ground-truth
    box of that class (all windows where the image has none)."""
    boxes = gt_boxes[gt_labels == cls]
    if len(boxes) == 0:
        return torch.ones(len(windows), dtype=torch.bool)
    return box_iou(windows, boxes).max(dim=1).values < SVM_NEGATIVE_IOU


def context_pad(size: int) -> float:
    """The 16 pixels of context at 227x227, scaled to a ``size`` x ``size`` input."""
    return CONTEXT_PAD * size / REFERENCE_CROP


def warp_windows(
    image: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, 3, size, size) Caffe-style crops of a uint8 (3, H, W) image: each box dilated by the
    context padding, warped anisotropically (bilinear roi_align; outside the image the mean
    pixel), and mirrored where ``flip`` is True."""
    pixels = caffe_pixels(image.float() / 255)
    padded = context_boxes(boxes.to(pixels), size, context_pad(size))
    crops = roi_align(pixels[None], [padded], size, 1.0, sampling_ratio=2, aligned=True)
    if flip is not None and bool(flip.any()):
        flip = flip.to(crops.device)
        crops[flip] = crops[flip].flip(-1)
    return crops


@dataclass
class Windows:
    """One image's windows: its proposals (capped), then (training) its non-difficult
    ground-truth boxes; with their fine-tuning labels and the image's ground truth."""

    image_id: str
    path: Path
    boxes: torch.Tensor  # (N, 4)
    labels: torch.Tensor  # (N,) fine-tuning labels, 0 background
    gt_boxes: torch.Tensor  # every object, difficult included
    gt_labels: torch.Tensor
    gt_difficult: torch.Tensor

    @property
    def positives(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Non-difficult ground-truth boxes and their classes (the SVMs' positives)."""
        keep = ~self.gt_difficult
        return self.gt_boxes[keep], self.gt_labels[keep]


def image_windows(
    dataset: VocDetection,
    proposals: Proposals,
    limit: int | None,
    max_proposals: int | None,
    with_ground_truth: bool,
) -> list[Windows]:
    """Windows of the first ``limit`` images of ``dataset`` that have proposals."""
    out = []
    for index in range(len(dataset) if limit is None else min(limit, len(dataset))):
        image_id = dataset.ids[index]
        if image_id not in proposals.boxes:
            continue
        target = dataset.target(index)
        boxes = torch.from_numpy(proposals.boxes[image_id][:max_proposals]).float().reshape(-1, 4)
        gt, labels, difficult = target["boxes"], target["labels"], target["difficult"]
        if with_ground_truth:
            boxes = torch.cat([boxes, gt[~difficult]])
        fine = finetune_labels(boxes, gt[~difficult], labels[~difficult])
        path = dataset.image_path(index)
        out.append(Windows(image_id, path, boxes, fine, gt, labels, difficult))
    return out


def split_items(dataset: VocDetection, limit: int | None) -> list[tuple[str, Path]]:
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return [(dataset.ids[i], dataset.image_path(i)) for i in range(count)]


class ImageStore:
    """Decoded uint8 images by path, kept in memory (R-CNN reads windows from every training
    image in every batch; VOC 2007 trainval is ~2.8 GB as uint8)."""

    def __init__(self) -> None:
        self._images: dict[Path, torch.Tensor | None] = {}
        self.corrupt: list[str] = []

    def get(self, path: Path) -> torch.Tensor | None:
        if path not in self._images:
            image = read_image(path)
            if image is None:
                self.corrupt.append(str(path))
            self._images[path] = image
        return self._images[path]
