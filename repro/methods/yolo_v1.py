"""YOLOv1's grid targets, sum-squared loss and decoding (Redmon et al. 2016, Section 2).

Shared by the paper's networks (``repro.models.yolo``: ``yolov1``, ``fast_yolo``, whose last
layer is linear) and the synthetic demo's small detector (``repro.demos.detector.TinyYolo``,
whose outputs are bounded by sigmoid/softmax). Both lay out one cell's prediction vector
(length B * 5 + C) as ``[x, y, sqrt_w, sqrt_h, conf] * B + [p_1 .. p_C]``: x, y are the box
centre's offset inside the cell, w, h are relative to the whole image, and the outputs come as
(N, S, S, B * 5 + C). Boxes outside the model are pixel xyxy with continuous coordinates
(0 .. width), as torchvision uses them.

The loss takes the outputs as they are, as the paper's does (a linear output may leave [0, 1]
and is pulled back by the squared error). Decoding clamps every field to [0, 1] first: for the
demo's bounded outputs that changes nothing, for linear ones it keeps a negative confidence
times a negative class probability from becoming a positive score and a negative sqrt size from
squaring into a box.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms

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
        b = img_boxes.detach().float().cpu() / spec.size
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


def cell_offsets(s: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and row index of every cell of an S x S grid, each (S, S)."""
    idx = torch.arange(s, device=device, dtype=torch.float32)
    rows, cols = torch.meshgrid(idx, idx, indexing="ij")
    return cols, rows


def xyxy(cx: torch.Tensor, cy: torch.Tensor, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def boxes_from_grid(pred: torch.Tensor, spec: GridSpec) -> torch.Tensor:
    """The B predicted boxes of every cell as normalised xyxy, shape (N, S, S, B, 4)."""
    n, s = pred.shape[0], spec.grid
    fields = pred[..., : spec.boxes * BOX_FIELDS].reshape(n, s, s, spec.boxes, BOX_FIELDS)
    cols, rows = cell_offsets(s, pred.device)
    cx = (fields[..., 0] + cols[..., None]) / s
    cy = (fields[..., 1] + rows[..., None]) / s
    return xyxy(cx, cy, fields[..., 2] ** 2, fields[..., 3] ** 2)


def iou_xyxy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
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
    pred = pred.float()
    target = target.to(pred.device)
    n, s, nb = pred.shape[0], spec.grid, spec.boxes
    fields = pred[..., : nb * BOX_FIELDS].reshape(n, s, s, nb, BOX_FIELDS)
    probs = pred[..., nb * BOX_FIELDS :]
    obj = target[..., 0]  # (N, S, S)
    tx, ty, tw, th = target[..., 1], target[..., 2], target[..., 3], target[..., 4]

    cols, rows = cell_offsets(s, pred.device)
    gt_box = xyxy((tx + cols) / s, (ty + rows) / s, tw, th)
    with torch.no_grad():
        iou = iou_xyxy(boxes_from_grid(pred, spec), gt_box[..., None, :])  # (N, S, S, B)
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
    """Predictions (N, S, S, B * 5 + C), bounded or linear, to per-image detections in pixel
    coordinates of the spec.size input: every field clamped to [0, 1], class-specific score =
    box confidence x class probability for every box and class, scores below
    ``score_threshold`` dropped, per-class NMS at ``nms_iou``, the ``max_per_image`` best
    kept."""
    pred = pred.detach().float().clamp(0.0, 1.0)
    n, s, nb, c = pred.shape[0], spec.grid, spec.boxes, spec.classes
    boxes = (boxes_from_grid(pred, spec).clamp(0.0, 1.0) * spec.size).reshape(n, -1, 4)
    conf = pred[..., : nb * BOX_FIELDS].reshape(n, s, s, nb, BOX_FIELDS)[..., 4]
    probs = pred[..., nb * BOX_FIELDS :]
    scores = (conf[..., None] * probs[..., None, :]).reshape(n, -1, c)  # (N, S*S*B, C)
    return select_detections(boxes, scores, score_threshold, nms_iou, max_per_image)


def select_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    score_threshold: float,
    nms_iou: float,
    max_per_image: int,
) -> list[Detections]:
    """Per image, from pixel xyxy ``boxes`` (N, K, 4) and class-specific ``scores`` (N, K, C):
    every (box, class) above ``score_threshold`` with a box of positive width and height,
    per-class NMS at ``nms_iou``, the ``max_per_image`` best kept."""
    out: list[Detections] = []
    for i in range(boxes.shape[0]):
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
