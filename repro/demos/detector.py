"""A small YOLOv1-style detector for the synthetic detection demo.

A demonstration model, not a paper network: it is not registered in repro.models (the paper's
YOLOv1 is ``repro.models.yolo.yolov1``). It keeps what defines YOLOv1 (Redmon et al. 2016):
an S x S grid, B boxes per cell with a confidence each, C class probabilities per cell, the
sum-squared loss with lambda_coord = 5 and lambda_noobj = 0.5, square roots of width and height,
the responsible predictor chosen by the highest IoU, and class-specific scores = confidence x
class probability at test time. Sized for ~96x96 images on a CPU, it differs in three ways:
six 3x3 conv layers with batch norm (YOLOv2's first change) instead of 24 conv + 2 FC layers,
a 1x1 conv head instead of the FC layers, and bounded output activations (sigmoid, softmax)
instead of a linear last layer, so training is stable from random weights without ImageNet
pre-training.

Layout of one cell's prediction vector (length B * 5 + C), all values in [0, 1]:
``[x, y, sqrt_w, sqrt_h, conf] * B + [p_1 .. p_C]``; x, y are the box centre's offset inside
the cell, w, h are relative to the whole image. Boxes outside the model are pixel xyxy with
continuous coordinates (0 .. width), as torchvision uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LAMBDA_COORD = 5.0  # Redmon et al. 2016, Section 2.2
LAMBDA_NOOBJ = 0.5
BOX_FIELDS = 5  # x, y, sqrt_w, sqrt_h, conf


@dataclass(frozen=True)
class GridSpec:
    """The output geometry: S x S cells, B boxes per cell, C classes, square input of `size`."""

    grid: int
    boxes: int
    classes: int
    size: int

    @property
    def depth(self) -> int:
        return self.boxes * BOX_FIELDS + self.classes


def _conv_bn(in_ch: int, out_ch: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.1),  # YOLOv1's leaky rectifier, slope 0.1
    ]


class TinyYolo(nn.Module):
    """YOLOv1-style detector: a stride-2 stem conv (YOLOv1 starts with a 7x7/2 conv), then
    conv/BN/leaky + max-pool stages halving the resolution down to the S x S grid, two more
    convs there, and a 1x1 conv predicting B * 5 + C values per cell. ``forward`` returns the
    activated predictions, shape (N, S, S, B * 5 + C)."""

    def __init__(
        self,
        num_classes: int,
        *,
        image_size: int = 96,
        grid: int = 6,
        boxes: int = 2,
        width: int = 16,
    ) -> None:
        super().__init__()
        stride = image_size // grid
        if image_size % grid or stride < 2 or stride & (stride - 1):
            raise ValueError(
                f"image_size {image_size} / grid {grid} must be a power-of-two stride of at "
                "least 2 (e.g. 96 / 6 = 16)"
            )
        self.spec = GridSpec(grid=grid, boxes=boxes, classes=num_classes, size=image_size)
        layers = _conv_bn(3, width, stride=2)
        channels = width
        for _ in range(stride.bit_length() - 2):  # one conv + pool per further factor of two
            out_ch = min(channels * 2, width * 8)
            layers += [*_conv_bn(channels, out_ch), nn.MaxPool2d(2)]
            channels = out_ch
        layers += _conv_bn(channels, channels) + _conv_bn(channels, channels)
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, self.spec.depth, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.head(self.features(images)).permute(0, 2, 3, 1)
        return activate(raw, self.spec)


def activate(raw: torch.Tensor, spec: GridSpec) -> torch.Tensor:
    """Bounded outputs instead of the paper's linear layer: sigmoid for the box fields (offsets,
    sqrt sizes and confidence all live in [0, 1]) and softmax for the class probabilities."""
    nb = spec.boxes * BOX_FIELDS
    boxes = torch.sigmoid(raw[..., :nb])
    probs = torch.softmax(raw[..., nb:], dim=-1)
    return torch.cat([boxes, probs], dim=-1)


# --- targets -----------------------------------------------------------------------------


def encode_targets(
    boxes: list[torch.Tensor], labels: list[torch.Tensor], spec: GridSpec
) -> torch.Tensor:
    """Ground truth as a (N, S, S, 5 + C) grid: [has_object, x, y, w, h, one-hot classes].

    ``boxes[i]`` is (K, 4) pixel xyxy of image i (in spec.size coordinates), ``labels[i]`` (K,)
    class indices. The cell holding a box centre is responsible for it; when two centres fall
    into one cell YOLOv1 can keep only one, and the larger box is kept."""
    s, c = spec.grid, spec.classes
    target = torch.zeros(len(boxes), s, s, 5 + c)
    for i, (img_boxes, img_labels) in enumerate(zip(boxes, labels, strict=True)):
        if len(img_boxes) == 0:
            continue
        b = img_boxes.float() / spec.size
        w = (b[:, 2] - b[:, 0]).clamp(min=0.0, max=1.0)
        h = (b[:, 3] - b[:, 1]).clamp(min=0.0, max=1.0)
        cx = ((b[:, 0] + b[:, 2]) / 2 * s).clamp(0, s - 1e-4)
        cy = ((b[:, 1] + b[:, 3]) / 2 * s).clamp(0, s - 1e-4)
        for k in torch.argsort(w * h).tolist():  # ascending area: the larger box overwrites
            col, row = int(cx[k]), int(cy[k])
            target[i, row, col, :5] = torch.stack(
                [torch.ones(()), cx[k] - col, cy[k] - row, w[k], h[k]]
            )
            target[i, row, col, 5:] = 0.0
            target[i, row, col, 5 + int(img_labels[k])] = 1.0
    return target


def _cell_offsets(s: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(s, device=device, dtype=torch.float32)
    rows, cols = torch.meshgrid(idx, idx, indexing="ij")
    return cols, rows


def boxes_from_grid(pred: torch.Tensor, spec: GridSpec) -> torch.Tensor:
    """The B predicted boxes of every cell as normalised xyxy, shape (N, S, S, B, 4)."""
    n, s = pred.shape[0], spec.grid
    fields = pred[..., : spec.boxes * BOX_FIELDS].reshape(n, s, s, spec.boxes, BOX_FIELDS)
    cols, rows = _cell_offsets(s, pred.device)
    cx = (fields[..., 0] + cols[..., None]) / s
    cy = (fields[..., 1] + rows[..., None]) / s
    w, h = fields[..., 2] ** 2, fields[..., 3] ** 2
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _iou_xyxy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise IoU of broadcastable (..., 4) box tensors."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)


def yolo_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    spec: GridSpec,
    *,
    lambda_coord: float = LAMBDA_COORD,
    lambda_noobj: float = LAMBDA_NOOBJ,
) -> torch.Tensor:
    """YOLOv1's sum-squared loss (Redmon et al. 2016, Eq. 3), summed over the grid and averaged
    over the batch. The responsible predictor of an object cell is the one of the B whose box
    has the highest IoU with the ground truth; its confidence target is that IoU."""
    n, s, nb = pred.shape[0], spec.grid, spec.boxes
    fields = pred[..., : nb * BOX_FIELDS].reshape(n, s, s, nb, BOX_FIELDS)
    probs = pred[..., nb * BOX_FIELDS :]
    obj = target[..., 0]  # (N, S, S)
    tx, ty, tw, th = target[..., 1], target[..., 2], target[..., 3], target[..., 4]

    cols, rows = _cell_offsets(s, pred.device)
    gt_cx, gt_cy = (tx + cols) / s, (ty + rows) / s
    gt_box = torch.stack([gt_cx - tw / 2, gt_cy - th / 2, gt_cx + tw / 2, gt_cy + th / 2], -1)
    with torch.no_grad():
        iou = _iou_xyxy(boxes_from_grid(pred, spec), gt_box[..., None, :])  # (N, S, S, B)
        best = iou.argmax(-1, keepdim=True)
        responsible = torch.zeros_like(iou).scatter_(-1, best, 1.0) * obj[..., None]

    coord = (fields[..., 0] - tx[..., None]) ** 2 + (fields[..., 1] - ty[..., None]) ** 2
    size = (fields[..., 2] - tw.sqrt()[..., None]) ** 2 + (
        fields[..., 3] - th.sqrt()[..., None]
    ) ** 2
    conf = fields[..., 4]
    loss = (
        lambda_coord * (responsible * (coord + size)).sum()
        + (responsible * (conf - iou) ** 2).sum()
        + lambda_noobj * ((1.0 - responsible) * conf**2).sum()
        + (obj[..., None] * (probs - target[..., 5:]) ** 2).sum()
    )
    return loss / n


# --- decoding ----------------------------------------------------------------------------


@dataclass
class Detections:
    """One image's detections: pixel xyxy boxes (K, 4), scores (K,), class indices (K,)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def decode(
    pred: torch.Tensor,
    spec: GridSpec,
    *,
    score_threshold: float = 0.01,
    nms_iou: float = 0.5,
    max_per_image: int = 100,
) -> list[Detections]:
    """Activated predictions (N, S, S, B * 5 + C) to per-image detections in pixel coordinates
    of the spec.size input: class-specific score = box confidence x class probability for every
    box and class, scores below ``score_threshold`` dropped, per-class NMS at ``nms_iou``, the
    ``max_per_image`` best kept."""
    from torchvision.ops import batched_nms

    n, s, nb, c = pred.shape[0], spec.grid, spec.boxes, spec.classes
    boxes = (boxes_from_grid(pred, spec).clamp(0.0, 1.0) * spec.size).reshape(n, -1, 4)
    conf = pred[..., : nb * BOX_FIELDS].reshape(n, s, s, nb, BOX_FIELDS)[..., 4]
    probs = pred[..., nb * BOX_FIELDS :]
    scores = (conf[..., None] * probs[..., None, :]).reshape(n, -1, c)  # (N, S*S*B, C)
    out: list[Detections] = []
    for i in range(n):
        box_idx, cls = (scores[i] > score_threshold).nonzero(as_tuple=True)
        cand_boxes, cand_scores = boxes[i, box_idx], scores[i, box_idx, cls]
        wide = (cand_boxes[:, 2] > cand_boxes[:, 0]) & (cand_boxes[:, 3] > cand_boxes[:, 1])
        cand_boxes, cand_scores, cls = cand_boxes[wide], cand_scores[wide], cls[wide]
        keep = batched_nms(cand_boxes, cand_scores, cls, nms_iou)[:max_per_image]
        out.append(Detections(cand_boxes[keep], cand_scores[keep], cls[keep]))
    return out


def perfect_prediction(target: torch.Tensor, spec: GridSpec) -> torch.Tensor:
    """The prediction a perfect detector would make for ``target`` (encode_targets output):
    every object cell's first predictor holds the box with confidence 1 and its class
    probability 1; everything else is 0. Used to check that encoding and decoding agree."""
    n, s = target.shape[:3][0], spec.grid
    pred = torch.zeros(n, s, s, spec.depth)
    obj = target[..., 0]
    pred[..., 0] = target[..., 1]
    pred[..., 1] = target[..., 2]
    pred[..., 2] = target[..., 3].sqrt()
    pred[..., 3] = target[..., 4].sqrt()
    pred[..., 4] = obj
    pred[..., spec.boxes * BOX_FIELDS :] = target[..., 5:]
    return pred
