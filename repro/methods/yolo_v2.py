"""YOLOv2's region targets, loss and decoding (Redmon & Farhadi 2017, "YOLO9000", Section 2,
"Better"), for ``repro.models.yolo.yolov2``, whose output is (N, A * (5 + C), S, S).

From the paper (seed 002, "Direct Location Prediction", "Dimension Clusters"): every cell
predicts A boxes, one per prior (p_w, p_h); a box's fields are t_x, t_y, t_w, t_h, t_o and C class
scores, and with the cell's offset (c_x, c_y)

    b_x = sigmoid(t_x) + c_x,  b_y = sigmoid(t_y) + c_y,  b_w = p_w e^{t_w},  b_h = p_h e^{t_h},
    sigmoid(t_o) = Pr(object) * IoU(b, object),

the class scores giving Pr(class | object). The seed says nothing about which prediction is
trained on which object or with what loss; there we follow darknet's region layer
(``region_layer.c``) with the settings of its released VOC config (``yolo-voc.cfg``):

- layout: channel a * (5 + C) + k holds field k of anchor a (t_x, t_y, t_w, t_h, t_o, classes);
- the responsible prediction of a ground-truth box is, in the cell holding the box centre, the
  anchor whose prior has the best IoU with the box by shape alone (both centred: bias_match);
  when two boxes pick one cell and anchor, the larger box keeps it;
- coordinates: squared error of sigmoid(t_x), sigmoid(t_y) against the centre's offset in the
  cell and of t_w, t_h against log(w / p_w), log(h / p_h), weighted by coord_scale (1) times
  (2 - w * h) with w, h as fractions of the image: darknet's weighting, which favours small
  boxes (the paper has no such term);
- objectness: squared error of sigmoid(t_o) against the IoU of the predicted box with its truth
  (rescore) for responsible predictions, weight object_scale (5); every other prediction is
  pushed to 0, weight noobject_scale (1), unless its box overlaps some ground truth by more than
  0.6 (thresh): then it is ignored;
- classes: softmax cross-entropy over the C class logits of responsible predictions (class_scale
  1). Darknet's softmax region layer sets the delta (one-hot - softmax), which is the gradient
  of exactly this cross-entropy with respect to the logits, so this is its class loss rather
  than squared error on probabilities.

The squared terms carry darknet's 1/2, so the gradient equals darknet's delta; the sum is
averaged over the images of the batch (darknet divides the update by the batch). Left out:
darknet's term that pulls every prediction towards its prior's shape and cell centre for the
first 12800 training images (a warm-up the paper does not describe).

Priors are in grid-cell units of the 13x13 grid at 416x416 (YOLOV2_VOC_ANCHORS, from darknet's
yolo-voc.cfg; the seeds give k = 5 but no values). Images are resized to the square input, so an
object covers the same fraction of it at any input size; `make_spec` therefore scales the priors
by S / 13 to keep them the same fraction of the image on an S x S grid (input S * 32), which lets
small inputs (128 px: a 4x4 grid) train with the paper's priors. (Darknet's multi-scale training
keeps them fixed in cells instead, i.e. fixed in pixels.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from repro.errors import ReproError
from repro.methods.yolo_v1 import Detections, cell_offsets, iou_xyxy, select_detections, xyxy

REFERENCE_GRID = 13  # the priors' grid: 416 / 32
STRIDE = 32  # input pixels per output cell
BOX_FIELDS = 5  # t_x, t_y, t_w, t_h, t_o
# darknet yolo-voc.cfg [region]
COORD_SCALE = 1.0
OBJECT_SCALE = 5.0
NOOBJECT_SCALE = 1.0
CLASS_SCALE = 1.0
IGNORE_IOU = 0.6
# e^{t_w} is capped when boxes are built (torchvision's BoxCoder cap, log(1000 / 16)) so that an
# untrained network's large t_w cannot make infinite boxes; the loss on t_w itself is uncapped.
MAX_LOG_SCALE = math.log(1000.0 / 16)
SURE_LOGIT = 20.0  # sigmoid(20) = 1 - 2e-9: a "certain" logit for perfect_prediction


@dataclass(frozen=True)
class AnchorSpec:
    """The output geometry: S x S cells, a prior (w, h) in cells of this grid per anchor, C
    classes, square input of ``size`` pixels."""

    grid: int
    priors: tuple[tuple[float, float], ...]
    classes: int
    size: int

    @property
    def anchors(self) -> int:
        return len(self.priors)

    @property
    def depth(self) -> int:
        """Output channels: A * (5 + C)."""
        return self.anchors * (BOX_FIELDS + self.classes)

    def prior_tensor(self, device: torch.device | None = None) -> torch.Tensor:
        """The priors as fractions of the image, (A, 2)."""
        return torch.tensor(self.priors, dtype=torch.float32, device=device) / self.grid


def make_spec(priors: Sequence[Sequence[float]], classes: int, size: int) -> AnchorSpec:
    """The spec for a ``size`` x ``size`` input of priors given in 13x13 grid units (scaled by
    S / 13, see the module doc)."""
    if size % STRIDE or size < STRIDE:
        raise ReproError(
            f"YOLOv2 input size {size} is not a multiple of its output stride {STRIDE}.",
            "use an input_size and evaluation crop that are multiples of 32 (e.g. 128, 416).",
        )
    grid = size // STRIDE
    scaled = tuple((w * grid / REFERENCE_GRID, h * grid / REFERENCE_GRID) for w, h in priors)
    return AnchorSpec(grid=grid, priors=scaled, classes=classes, size=size)


def region_fields(pred: torch.Tensor, spec: AnchorSpec) -> torch.Tensor:
    """The raw output (N, A * (5 + C), S, S) as (N, S, S, A, 5 + C)."""
    n, s, a = pred.shape[0], spec.grid, spec.anchors
    if tuple(pred.shape[1:]) != (spec.depth, s, s):
        raise ReproError(
            f"YOLOv2 output of shape {tuple(pred.shape)} does not match {a} anchors x (5 + "
            f"{spec.classes} classes) on a {s}x{s} grid ({spec.size}px input).",
            "build the model with the dataset's class count and its anchors, and feed it the "
            "spec's input size.",
        )
    return pred.reshape(n, a, BOX_FIELDS + spec.classes, s, s).permute(0, 3, 4, 1, 2)


def region_boxes(fields: torch.Tensor, spec: AnchorSpec) -> torch.Tensor:
    """The predicted boxes (paper's b_x .. b_h) as normalised xyxy, (N, S, S, A, 4)."""
    s = spec.grid
    cols, rows = cell_offsets(s, fields.device)
    cx = (fields[..., 0].sigmoid() + cols[..., None]) / s
    cy = (fields[..., 1].sigmoid() + rows[..., None]) / s
    wh = spec.prior_tensor(fields.device) * fields[..., 2:4].clamp(max=MAX_LOG_SCALE).exp()
    return xyxy(cx, cy, wh[..., 0], wh[..., 1])


# --- targets -----------------------------------------------------------------------------


@dataclass
class RegionTargets:
    """Ground truth laid out like the predictions, (N, S, S, A, ...), plus every image's
    boxes for the ignore rule."""

    responsible: torch.Tensor  # (N, S, S, A) bool
    offset: torch.Tensor  # (N, S, S, A, 2): centre offset in the cell, sigmoid(t_x, t_y)'s target
    log_scale: torch.Tensor  # (N, S, S, A, 2): log(w / p_w), log(h / p_h), t_w and t_h's target
    weight: torch.Tensor  # (N, S, S, A): 2 - w * h
    box: torch.Tensor  # (N, S, S, A, 4): the truth, normalised xyxy
    label: torch.Tensor  # (N, S, S, A) long
    truths: torch.Tensor  # (N, K, 4): every image's boxes, normalised xyxy, zero-padded
    truth_mask: torch.Tensor  # (N, K) bool: which of ``truths`` are boxes

    def to(self, device: torch.device | str) -> RegionTargets:
        moved = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)}
        return RegionTargets(**moved)


def encode_targets(
    boxes: list[torch.Tensor], labels: list[torch.Tensor], spec: AnchorSpec
) -> RegionTargets:
    """``boxes[i]``: (K, 4) pixel xyxy of image i in spec.size coordinates; ``labels[i]``: (K,)
    class indices. Boxes of zero width or height are skipped."""
    n, s, a = len(boxes), spec.grid, spec.anchors
    priors = spec.prior_tensor()
    k_max = max((len(b) for b in boxes), default=0)
    t = RegionTargets(
        responsible=torch.zeros(n, s, s, a, dtype=torch.bool),
        offset=torch.zeros(n, s, s, a, 2),
        log_scale=torch.zeros(n, s, s, a, 2),
        weight=torch.zeros(n, s, s, a),
        box=torch.zeros(n, s, s, a, 4),
        label=torch.zeros(n, s, s, a, dtype=torch.long),
        truths=torch.zeros(n, k_max, 4),
        truth_mask=torch.zeros(n, k_max, dtype=torch.bool),
    )
    for i, (img_boxes, img_labels) in enumerate(zip(boxes, labels, strict=True)):
        b = (img_boxes.detach().float().cpu().reshape(-1, 4) / spec.size).clamp(0.0, 1.0)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        keep = (w > 0) & (h > 0)
        b, w, h, cls = b[keep], w[keep], h[keep], img_labels.detach().cpu().reshape(-1)[keep]
        t.truths[i, : len(b)] = b
        t.truth_mask[i, : len(b)] = True
        cx = ((b[:, 0] + b[:, 2]) / 2 * s).clamp(0, s - 1e-4)
        cy = ((b[:, 1] + b[:, 3]) / 2 * s).clamp(0, s - 1e-4)
        # IoU of the boxes (K,) and priors (A, 2) by shape alone, centred at one point: (K, A)
        inter = torch.minimum(w[:, None], priors[:, 0]) * torch.minimum(h[:, None], priors[:, 1])
        union = (w * h)[:, None] + priors.prod(-1) - inter
        best = (inter / union.clamp(min=1e-12)).argmax(-1)
        for k in torch.argsort(w * h).tolist():  # ascending area: the larger box overwrites
            col, row, anchor = int(cx[k]), int(cy[k]), int(best[k])
            at = (i, row, col, anchor)
            t.responsible[at] = True
            t.offset[at] = torch.stack([cx[k] - col, cy[k] - row])
            t.log_scale[at] = torch.stack(
                [w[k] / priors[anchor, 0], h[k] / priors[anchor, 1]]
            ).log()
            t.weight[at] = 2.0 - w[k] * h[k]
            t.box[at] = b[k]
            t.label[at] = int(cls[k])
    return t


# --- loss --------------------------------------------------------------------------------


def _ignored(boxes: torch.Tensor, t: RegionTargets, threshold: float) -> torch.Tensor:
    """(N, S, S, A) bool: predictions whose box overlaps some truth of its image by more than
    ``threshold``."""
    if t.truths.shape[1] == 0:
        return torch.zeros(boxes.shape[:-1], dtype=torch.bool, device=boxes.device)
    n = boxes.shape[0]
    flat = boxes.reshape(n, -1, 1, 4)
    iou = iou_xyxy(flat, t.truths[:, None, :, :])  # (N, S*S*A, K)
    iou = iou.masked_fill(~t.truth_mask[:, None, :], -1.0)
    return (iou.amax(-1) > threshold).reshape(boxes.shape[:-1])


def region_loss(
    pred: torch.Tensor,
    targets: RegionTargets,
    spec: AnchorSpec,
    *,
    coord_scale: float = COORD_SCALE,
    object_scale: float = OBJECT_SCALE,
    noobject_scale: float = NOOBJECT_SCALE,
    class_scale: float = CLASS_SCALE,
    ignore_iou: float = IGNORE_IOU,
) -> torch.Tensor:
    """YOLOv2's loss of the raw output ``pred`` (N, A * (5 + C), S, S), summed over the grid
    and averaged over the batch (see the module doc for each term)."""
    fields = region_fields(pred.float(), spec)
    t = targets.to(fields.device)
    xy, twh = fields[..., 0:2].sigmoid(), fields[..., 2:4]
    objectness = fields[..., 4].sigmoid()
    with torch.no_grad():
        boxes = region_boxes(fields, spec)
        ignored = _ignored(boxes, t, ignore_iou)
        iou = iou_xyxy(boxes, t.box)  # each prediction with its own truth (if responsible)
    resp = t.responsible.float()
    background = (~t.responsible & ~ignored).float()
    coord = ((xy - t.offset) ** 2 + (twh - t.log_scale) ** 2).sum(-1)
    squared = (
        coord_scale * (resp * t.weight * coord).sum()
        + object_scale * (resp * (objectness - iou) ** 2).sum()
        + noobject_scale * (background * objectness**2).sum()
    )
    logits = fields[..., BOX_FIELDS:][t.responsible]
    classes = F.cross_entropy(logits, t.label[t.responsible], reduction="sum")
    return (0.5 * squared + class_scale * classes) / pred.shape[0]


# --- decoding ----------------------------------------------------------------------------


def decode(
    pred: torch.Tensor,
    spec: AnchorSpec,
    *,
    score_threshold: float = 0.01,
    nms_iou: float = 0.5,
    max_per_image: int = 100,
) -> list[Detections]:
    """Raw outputs (N, A * (5 + C), S, S) to per-image detections in pixel coordinates of the
    spec.size input: class-specific score = sigmoid(t_o) x softmax class probability for every
    box and class, boxes clipped to the image, scores below ``score_threshold`` dropped,
    per-class NMS at ``nms_iou``, the ``max_per_image`` best kept."""
    fields = region_fields(pred.detach().float(), spec)
    n = fields.shape[0]
    boxes = (region_boxes(fields, spec).clamp(0.0, 1.0) * spec.size).reshape(n, -1, 4)
    probs = fields[..., BOX_FIELDS:].softmax(-1)
    scores = (fields[..., 4].sigmoid()[..., None] * probs).reshape(n, -1, spec.classes)
    return select_detections(boxes, scores, score_threshold, nms_iou, max_per_image)


def perfect_prediction(targets: RegionTargets, spec: AnchorSpec) -> torch.Tensor:
    """The raw output (N, A * (5 + C), S, S) of a perfect detector for ``targets``: every
    responsible prediction holds its truth's box exactly, objectness and class logit
    SURE_LOGIT; every other prediction's objectness is -SURE_LOGIT. Used to check that
    encoding, loss and decoding agree."""
    n, s, a, c = targets.responsible.shape[0], spec.grid, spec.anchors, spec.classes
    fields = torch.zeros(n, s, s, a, BOX_FIELDS + c)
    resp = targets.responsible
    fields[..., 0:2] = torch.logit(targets.offset.clamp(1e-6, 1 - 1e-6))
    fields[..., 2:4] = targets.log_scale
    fields[..., 4] = torch.where(resp, SURE_LOGIT, -SURE_LOGIT)
    fields[..., BOX_FIELDS:] = F.one_hot(targets.label, c) * SURE_LOGIT * resp[..., None]
    return fields.permute(0, 3, 4, 1, 2).reshape(n, spec.depth, s, s)
