"""R-CNN at test time (Girshick et al. 2014), as the speed claims time it.

For each of the image's region proposals: dilate the box so that 16 pixels of image context
surround it at the CNN's input size, warp the dilated box anisotropically to that size (227 for
AlexNet, 224 for VGG-16), and run the crop through the whole CNN up to fc7 (crops in batches, as
R-CNN's feature extraction did). Per-class linear SVMs score the 4096-d fc7 features (a Linear
4096 -> 21 for VOC) and greedy NMS (IoU 0.3) runs per class. Region proposal time is not part of
:meth:`RCNN.step` (the "test time per image" of the tables excludes it).

Weights are untrained: timing does not depend on their values, only on the work done.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import batched_nms, roi_align

from repro.errors import ReproError
from repro.models import build_model
from repro.models.faster_rcnn import CAFFE_MEAN_RGB, VOC_NUM_CLASSES

CONTEXT_PAD = 16  # pixels of context around each warped box (R-CNN Section 2.1, Appendix A)
CROP_SIZE = {"alexnet": 227, "alexnet_single": 227, "vgg16": 224, "vgg_d": 224}
NMS_IOU = 0.3
FEATURE_DIM = 4096


def caffe_pixels(image: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) image in [0, 1] as Caffe saw it: 0..255 with the mean pixel subtracted."""
    mean = torch.tensor(CAFFE_MEAN_RGB, device=image.device, dtype=image.dtype) * 255
    return image * 255 - mean[:, None, None]


def cut_head(model: nn.Module) -> nn.Linear:
    """Replace the model's last layer (``fc8``, or ``classifier[-1]``) by Identity, so that it
    returns fc7's features; return that layer."""
    if isinstance(getattr(model, "fc8", None), nn.Linear):
        head, model.fc8 = model.fc8, nn.Identity()
        return head
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear):
        head, classifier[-1] = classifier[-1], nn.Identity()
        return head
    raise ReproError(
        f"{type(model).__name__} has neither an `fc8` Linear nor a `classifier` Sequential "
        "ending in a Linear, so R-CNN cannot replace its last layer.",
        "use a classifier such as alexnet_single.",
    )


def context_boxes(boxes: torch.Tensor, crop: int, pad: int = CONTEXT_PAD) -> torch.Tensor:
    """Boxes dilated so that, warped to ``crop`` x ``crop``, the original box fills the central
    ``crop - 2 * pad`` pixels (parts outside the image become the mean, zero after subtraction)."""
    grow = crop / (crop - 2 * pad)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * grow
    return torch.cat([centre - half, centre + half], dim=1)


def per_class_nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou: float = NMS_IOU
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy NMS per class over every box: ``boxes`` (N, 4) shared by all classes or (N, C, 4)
    per class, ``scores`` (N, C) for the C object classes. Returns kept boxes, scores, labels."""
    n, c = scores.shape
    if boxes.dim() == 2:
        boxes = boxes[:, None, :].expand(n, c, 4)
    labels = torch.arange(c, device=scores.device).expand(n, c).reshape(-1)
    flat_boxes, flat_scores = boxes.reshape(-1, 4), scores.reshape(-1)
    keep = batched_nms(flat_boxes, flat_scores, labels, iou)
    return flat_boxes[keep], flat_scores[keep], labels[keep]


class RCNN:
    """R-CNN's per-proposal CNN on one image; :meth:`step` is one image's test time without
    proposals, ``crops_per_step`` the CNN forward passes it makes (one per proposal)."""

    images = 1  # per step

    def __init__(
        self,
        cnn: str,
        image: torch.Tensor,
        boxes: torch.Tensor,
        *,
        batch: int = 64,
        num_classes: int = VOC_NUM_CLASSES,
        device: torch.device | str = "cpu",
    ) -> None:
        if cnn not in CROP_SIZE:
            raise ValueError(f"R-CNN is timed on {', '.join(CROP_SIZE)}, not {cnn!r}")
        self.device = torch.device(device)
        self.crop = CROP_SIZE[cnn]
        self.cnn = build_model(cnn)
        cut_head(self.cnn)
        self.cnn.eval().to(self.device)
        self.svm = nn.Linear(FEATURE_DIM, num_classes).eval().to(self.device)
        self.image = image.to(self.device)
        self.boxes = boxes.to(self.device)
        self.batch = batch
        self.crops_per_step = len(boxes)
        self.probe_scale = math.ceil(len(boxes) / batch)  # batches of crops in a step

    def _warp(self, pixels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        # roi_align with 2x2 bilinear samples per output pixel: an anisotropic bilinear warp
        padded = context_boxes(boxes, self.crop)
        return roi_align(pixels[None], [padded], self.crop, 1.0, sampling_ratio=2, aligned=True)

    def _features(self, pixels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return self.cnn(self._warp(pixels, boxes))

    def step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            pixels = caffe_pixels(self.image)
            feats = [
                self._features(pixels, self.boxes[i : i + self.batch])
                for i in range(0, len(self.boxes), self.batch)
            ]
            scores = self.svm(torch.cat(feats))
            return per_class_nms(self.boxes, scores[:, 1:])

    def count_macs(self) -> float:
        """Multiply-adds of a step: one crop's CNN pass, times the crops, plus the SVMs."""
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            self._features(caffe_pixels(self.image), self.boxes[:1])
        return counter.get_total_flops() / 2 * self.crops_per_step + (
            self.crops_per_step * self.svm.in_features * self.svm.out_features
        )

    def probe(self) -> None:
        """One batch of crops: the unit whose time, times ``probe_scale``, estimates a step
        (so that warming up does not cost a whole R-CNN pass)."""
        with torch.inference_mode():
            self._features(caffe_pixels(self.image), self.boxes[: self.batch])
