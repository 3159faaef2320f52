"""Dimension clusters: box-shape priors by k-means with a 1 - IoU distance (YOLOv2, YOLOv3), and
the mean IoU of ground-truth boxes to their closest prior (YOLOv2's Table 1).

Box shapes. Only a box's (w, h) matters: a box and a prior are compared as if they shared one
centre, so IoU = min(w, pw) * min(h, ph) / (w * h + pw * ph - inter). Shapes come from a split's
ground truth through repro.data's readers and are put in the frame each paper used:

- YOLOv2 (``relative``): w / image width, h / image height, as darknet's labels store them.
- YOLOv3: pixels of the square network input, w * 416 / image width (``input_size``). A uniform
  scaling of every box leaves every IoU unchanged, so its clusters are YOLOv2's times 416.
- Faster R-CNN (``faster_rcnn``): pixels of the image rescaled as Faster R-CNN tests it (shorter
  side 600, longer side at most 1000). Its 9 anchors (areas 128^2, 256^2, 512^2 x aspect ratios
  h/w 1:2, 1:1, 2:1, unrounded) are fixed in pixels of that image, so the 9-anchor row of YOLOv2's
  table is measured there; the paper does not say which frame it used.

Which boxes. VOC: every object of the split except those marked difficult (darknet's
voc_label.py, which made YOLOv2's training labels, leaves them out); a devkit box is
xmax - xmin + 1 wide. COCO: every non-crowd instance (a crowd region marks a group of objects,
not one object's box). Default split: the training set, VOC trainval (train + val without a
trainval file), COCO train2017 (= the trainval35k YOLOv3 trained on) else train2014.

k-means. Lloyd's algorithm: each box goes to the centroid of highest IoU, each centroid moves to
the mean (w, h) of its boxes, until no box changes cluster (or centroids move less than 1e-6
relative). The result depends on the initialisation (k-means++ seeding, with D = 1 - IoU): it
is run ``restarts`` times from a seeded generator and the restart with the highest mean IoU is
kept, so a (seed, restarts) pair always gives the same priors. With more than ``sample``
(50,000) boxes, as COCO's ~860k, k-means is fitted on a seeded sample of that many: a
centroid's sampling error is then a fraction of a percent, well below the spread between
initialisations, and COCO clusters in seconds. The mean IoU is always over all boxes. Centroids
are sorted by area (w * h), smallest first, as YOLOv3 lists its anchors.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from repro.data.coco import load_instances
from repro.data.problems import Problems
from repro.data.splits import named_splits
from repro.data.verify_report import VerifyReport
from repro.data.voc import load_split
from repro.errors import DataError, ReproError

log = logging.getLogger("repro.data")

ANCHOR_METRICS = ("avg_iou", "anchor_width", "anchor_height")
# Keys a claim's `params` may hold for these metrics, and what they mean.
PARAMS = {
    "k": "number of k-means clusters (avg_iou of k-means priors; anchor_width/height)",
    "priors": "a fixed prior set instead of k-means (avg_iou): faster_rcnn",
    "index": "anchor_width/height: which centroid, 1 = the smallest by area, k = the largest",
    "input_size": "anchor_width/height: side of the square network input, pixels (default 416)",
    "seed": "k-means: seed of the initialisation and the sample (default 0)",
    "restarts": "k-means: initialisations tried, the best mean IoU kept (default 10)",
    "split": "the split(s) clustered, 'a+b' for several (default: the training set)",
}
DEFAULT_INPUT_SIZE = 416
DEFAULT_SEED = 0
DEFAULT_RESTARTS = 10
DEFAULT_SAMPLE = 50_000
MAX_ITER = 300
FASTER_RCNN_AREAS = (128.0**2, 256.0**2, 512.0**2)
FASTER_RCNN_RATIOS = (0.5, 1.0, 2.0)  # h / w
FASTER_RCNN_SCALE = 600.0  # shorter side of the rescaled image
FASTER_RCNN_MAX_SIZE = 1000.0  # cap on the longer side


@dataclass(eq=False)  # hashed by identity: the k-means cache's key
class BoxShapes:
    """Ground-truth box sizes of one or more splits, in pixels of the original images."""

    wh: np.ndarray  # (N, 2) box width, height
    image_wh: np.ndarray  # (N, 2) width, height of each box's image
    source: str = ""  # what was read, for messages

    def __len__(self) -> int:
        return len(self.wh)

    def relative(self) -> np.ndarray:
        """YOLOv2's frame: fractions of the image width and height."""
        return self.wh / self.image_wh

    def faster_rcnn(
        self, scale: float = FASTER_RCNN_SCALE, max_size: float = FASTER_RCNN_MAX_SIZE
    ) -> np.ndarray:
        """Faster R-CNN's frame: pixels of the image rescaled to shorter side `scale`, longer
        side at most `max_size`."""
        short = self.image_wh.min(axis=1)
        long = self.image_wh.max(axis=1)
        factor = np.minimum(scale / short, max_size / long)
        return self.wh * factor[:, None]


@dataclass
class KMeansResult:
    centroids: np.ndarray  # (k, 2) sorted by area, smallest first
    mean_iou: float  # over every box, to its closest centroid
    restart_ious: list[float] = field(default_factory=list)  # per restart (on the sample)


def faster_rcnn_anchors() -> np.ndarray:
    """Faster R-CNN's 9 anchors as (w, h) pixels: areas 128^2, 256^2, 512^2 times aspect ratios
    h/w 1:2, 1:1, 2:1 (w = sqrt(A / r), h = sqrt(A * r)); unrounded, unlike py-faster-rcnn's
    generate_anchors (184x96 for 181x91), sorted by area then ratio."""
    return np.array(
        [(np.sqrt(a / r), np.sqrt(a * r)) for a in FASTER_RCNN_AREAS for r in FASTER_RCNN_RATIOS]
    )


PRIOR_SETS = {"faster_rcnn": faster_rcnn_anchors}


def _columns(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous (w, h, area) of (N, 2) shapes: the assignment step runs on these."""
    w = np.ascontiguousarray(boxes[:, 0])
    h = np.ascontiguousarray(boxes[:, 1])
    return w, h, w * h


def _closest(
    cols: tuple[np.ndarray, np.ndarray, np.ndarray], priors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(index, IoU) of each box's closest prior. One prior at a time, in place: (N,)
    temporaries instead of an (N, K) matrix, about twice as fast on COCO's ~860k boxes."""
    w, h, area = cols
    best = np.full(len(w), -1.0)
    label = np.zeros(len(w), dtype=np.intp)
    inter = np.empty_like(w)
    iou = np.empty_like(w)
    for j, (pw, ph) in enumerate(priors):
        np.minimum(w, pw, out=inter)
        inter *= np.minimum(h, ph)
        np.subtract(area, inter, out=iou)
        iou += pw * ph
        np.divide(inter, iou, out=iou)
        np.copyto(label, j, where=iou > best)
        np.maximum(best, iou, out=best)
    return label, best


def mean_iou(boxes: np.ndarray, priors: np.ndarray) -> float:
    """Mean over boxes of the IoU with the closest prior (YOLOv2's "Avg IOU")."""
    cols = _columns(_as_shapes(boxes))
    _, best = _closest(cols, np.asarray(priors, dtype=np.float64).reshape(-1, 2))
    return float(best.mean())


def _as_shapes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 2)
    if not np.all(boxes > 0):
        raise DataError(
            "box shapes must have positive width and height.",
            "drop empty boxes before clustering (the dataset readers do).",
        )
    return boxes


def _kmeans_pp(boxes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with D = 1 - IoU to the closest chosen centroid."""
    cols = _columns(boxes)
    chosen = [int(rng.integers(len(boxes)))]
    best = _closest(cols, boxes[chosen])[1]
    for _ in range(1, k):
        d2 = (1.0 - best) ** 2
        total = d2.sum()
        pick = (
            int(rng.choice(len(boxes), p=d2 / total))
            if total > 0
            else int(rng.integers(len(boxes)))
        )
        chosen.append(pick)
        np.maximum(best, _closest(cols, boxes[pick][None, :])[1], out=best)
    return boxes[chosen].copy()


def _update(boxes: np.ndarray, label: np.ndarray, best: np.ndarray, k: int) -> np.ndarray:
    """Each centroid moves to the mean (w, h) of its boxes; an empty cluster restarts at the
    box farthest (lowest IoU) from every centroid."""
    counts = np.bincount(label, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(label, weights=boxes[:, i], minlength=k) for i in (0, 1)], axis=1)
    centroids = sums / np.maximum(counts, 1.0)[:, None]
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        centroids[empty] = boxes[np.argsort(best, kind="stable")[: len(empty)]]
    return centroids


def _lloyd(
    boxes: np.ndarray, centroids: np.ndarray, max_iter: int = MAX_ITER, tol: float = 1e-6
) -> tuple[np.ndarray, float]:
    """Iterate to convergence: (centroids, mean IoU to them)."""
    cols = _columns(boxes)
    label, best = _closest(cols, centroids)
    for _ in range(max_iter):
        moved = _update(boxes, label, best, len(centroids))
        shift = float(np.max(np.abs(moved - centroids) / centroids))
        centroids = moved
        new_label, best = _closest(cols, centroids)
        if shift < tol or np.array_equal(new_label, label):
            return centroids, float(best.mean())
        label = new_label
    log.info("k-means stopped after %d iterations without converging", max_iter)
    return centroids, float(best.mean())


def kmeans_iou(
    boxes: np.ndarray,
    k: int,
    *,
    seed: int = DEFAULT_SEED,
    restarts: int = DEFAULT_RESTARTS,
    sample: int = DEFAULT_SAMPLE,
) -> KMeansResult:
    """k-means of box shapes with distance 1 - IoU (module docstring): the best of `restarts`
    k-means++ initialisations, deterministic given `seed`; fitted on a seeded sample of at most
    `sample` boxes, its mean IoU over all of them."""
    boxes = _as_shapes(boxes)
    if restarts < 1 or k < 1:
        raise ReproError(f"k-means with k={k}, restarts={restarts}.", "use k >= 1, restarts >= 1.")
    rng = np.random.default_rng(seed)
    fit = boxes
    if len(boxes) > sample:
        fit = boxes[np.sort(rng.choice(len(boxes), size=sample, replace=False))]
    distinct = len(np.unique(fit, axis=0))
    if distinct < k:
        raise DataError(
            f"cannot make {k} clusters from {len(boxes)} box(es) ({distinct} distinct shapes).",
            "use a smaller k or a split with more annotated objects.",
        )
    runs = [_lloyd(fit, _kmeans_pp(fit, k, rng)) for _ in range(restarts)]
    ious = [iou for _, iou in runs]
    centroids, iou = runs[int(np.argmax(ious))]
    if fit is not boxes:
        iou = mean_iou(boxes, centroids)
    order = np.argsort(centroids[:, 0] * centroids[:, 1], kind="stable")
    return KMeansResult(centroids[order], iou, ious)


# --- reading box shapes ------------------------------------------------------------------


def training_splits(report: VerifyReport, split: str | None = None) -> list[str]:
    """The splits clustered: `split` ('a+b' for several) when given, else the training set
    (module docstring)."""
    have = set(report.splits)
    if split:
        fix = "set the claim's params.split to splits the dataset has, joined with '+'."
        return named_splits(report, split, fix)
    if report.name.startswith("voc"):
        if "trainval" in have:
            return ["trainval"]
        chosen = [s for s in ("train", "val") if s in have]
    elif report.name == "coco":
        chosen = next(([s] for s in ("train2017", "train2014") if s in have), [])
    else:
        raise ReproError(
            f"{report.name} has no boxes to cluster.", "dimension clusters need VOC or COCO."
        )
    if not chosen:
        raise DataError(
            f"{report.root} has no training split (it has {', '.join(sorted(have)) or 'none'}).",
            "add the training split (VOC trainval, COCO train2017 or train2014), or name one "
            "in the claim's params.split.",
        )
    return chosen


def voc_box_shapes(voc_root: Path | str, splits: Sequence[str]) -> BoxShapes:
    """Shapes of the non-difficult objects of VOC `splits` (an image in two splits counts once)."""
    voc_root = Path(voc_root)
    seen: set[str] = set()
    wh: list[tuple[float, float]] = []
    image_wh: list[tuple[float, float]] = []
    problems = Problems(max_logged_per_kind=-1)  # none logged: the dataset scan reported them
    for split in splits:
        for image_id, ann in load_split(voc_root, split, problems).items():
            if image_id in seen or ann.width <= 0 or ann.height <= 0:
                continue
            seen.add(image_id)
            for obj in ann.objects:
                xmin, ymin, xmax, ymax = obj.bbox
                if not obj.difficult:
                    wh.append((xmax - xmin + 1, ymax - ymin + 1))
                    image_wh.append((ann.width, ann.height))
    return _shapes(wh, image_wh, f"{voc_root} {'+'.join(splits)}, non-difficult objects")


def coco_box_shapes(root: Path | str, splits: Sequence[str]) -> BoxShapes:
    """Shapes of the non-crowd instances of COCO `splits` (annotations/instances_<split>.json)."""
    root = Path(root)
    wh: list[Any] = []
    image_wh: list[Any] = []
    for split in splits:
        doc = load_instances(root / "annotations" / f"instances_{split}.json")
        size = {im.get("id"): (im.get("width") or 0, im.get("height") or 0) for im in doc["images"]}
        for ann in doc["annotations"]:
            bbox = ann.get("bbox")
            image = size.get(ann.get("image_id"))
            if ann.get("iscrowd", 0) or image is None or not isinstance(bbox, list):
                continue
            if len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0 and image[0] > 0 and image[1] > 0:
                wh.append(bbox[2:4])
                image_wh.append(image)
    return _shapes(wh, image_wh, f"{root} {'+'.join(splits)}, non-crowd instances")


def _shapes(wh: list[Any], image_wh: list[Any], source: str) -> BoxShapes:
    if not wh:
        raise DataError(
            f"{source}: no usable boxes to cluster.",
            "check the annotations (`repro data verify`); every box may be difficult/crowd/empty.",
        )
    return BoxShapes(np.asarray(wh, dtype=np.float64), np.asarray(image_wh, np.float64), source)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def report_box_shapes(report: VerifyReport, split: str | None = None) -> BoxShapes:
    """Box shapes of the training split(s) of the dataset `report` scanned (cached)."""
    splits = training_splits(report, split)
    root = Path(report.root)
    if report.name.startswith("voc"):
        files = [root / "ImageSets" / "Main" / f"{s}.txt" for s in splits]
    else:
        files = [root / "annotations" / f"instances_{s}.json" for s in splits]
    return _read_shapes(report.name, root, tuple(splits), tuple(_stamp(f) for f in files))


# Several claims share one dataset's shapes and one clustering: kept for the process, keyed by
# the files' modification time and size so a rewritten dataset is read again.
@functools.lru_cache(maxsize=8)
def _read_shapes(name: str, root: Path, splits: tuple[str, ...], _stamps: tuple) -> BoxShapes:
    shapes = (voc_box_shapes if name.startswith("voc") else coco_box_shapes)(root, splits)
    log.info("%d boxes from %s", len(shapes), shapes.source)
    return shapes


@functools.lru_cache(maxsize=8)
def _clusters(shapes: BoxShapes, k: int, seed: int, restarts: int) -> KMeansResult:
    result = kmeans_iou(shapes.relative(), k, seed=seed, restarts=restarts)
    log.info(
        "k-means k=%d on %s: mean IoU %.4f; restarts' mean IoU %.4f-%.4f (seed %d); "
        "centroids (w, h) relative: %s",
        k,
        shapes.source,
        result.mean_iou,
        min(result.restart_ious),
        max(result.restart_ious),
        seed,
        np.round(result.centroids, 4).tolist(),
    )
    return result


# --- claim values ------------------------------------------------------------------------


def _int_param(params: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = params.get(key, default)
    if value is None:
        raise ReproError(
            f"the claim's params lack {key!r} ({PARAMS[key]}).",
            f"add it to the claim, e.g. `params: {{{key}: ...}}`.",
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ReproError(f"params.{key} is {value!r}, not an integer.", f"set {key} to an integer.")
    return int(value)


def anchor_metric(report: VerifyReport, metric: str, params: Mapping[str, Any]) -> float:
    """The value of an avg_iou (percent), anchor_width or anchor_height (pixels) claim on the
    dataset `report` scanned; `params` are the claim's (:data:`PARAMS`)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ReproError(
            f"params {', '.join(unknown)} are unknown to {metric}.",
            f"use {', '.join(PARAMS)}.",
        )
    shapes = report_box_shapes(report, params.get("split"))  # type: ignore[arg-type]
    seed = _int_param(params, "seed", DEFAULT_SEED)
    restarts = _int_param(params, "restarts", DEFAULT_RESTARTS)
    if metric == "avg_iou":
        return 100.0 * _avg_iou(shapes, params, seed, restarts)
    if metric not in ("anchor_width", "anchor_height"):
        raise ReproError(f"{metric!r} is not a dimension-cluster metric.", f"use {ANCHOR_METRICS}.")
    k = _int_param(params, "k")
    index = _int_param(params, "index")
    if not 1 <= index <= k:
        raise ReproError(f"params.index is {index}, outside 1..{k}.", f"use 1..k (k = {k}).")
    size = _int_param(params, "input_size", DEFAULT_INPUT_SIZE)
    centroid = _clusters(shapes, k, seed, restarts).centroids[index - 1] * size
    return float(centroid[0] if metric == "anchor_width" else centroid[1])


def _avg_iou(shapes: BoxShapes, params: Mapping[str, Any], seed: int, restarts: int) -> float:
    priors = params.get("priors")
    if (priors is None) == ("k" not in params):
        raise ReproError(
            "avg_iou needs exactly one of params.k (k-means priors) and params.priors (a fixed "
            "set).",
            f"set `params: {{k: 5}}` or `params: {{priors: {next(iter(PRIOR_SETS))}}}`.",
        )
    if priors is None:
        return _clusters(shapes, _int_param(params, "k"), seed, restarts).mean_iou
    if priors not in PRIOR_SETS:
        raise ReproError(f"params.priors {priors!r} is unknown.", f"use {', '.join(PRIOR_SETS)}.")
    # Faster R-CNN's anchors are pixels of its rescaled image (module docstring).
    return mean_iou(shapes.faster_rcnn(), PRIOR_SETS[priors]())
