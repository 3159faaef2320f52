"""R-CNN's detection system for the accuracy claims (Girshick et al. 2014; seed 002, "RCNN"):
the window network, its fine-tuning batches, the window classifiers, detection and scoring.
`repro.train.rcnn.measure_rcnn` runs it once per seed, in this process on one device:

1. selective-search proposals (fast mode) of every train and eval image, cached on disk
   (repro.methods.rcnn.regions);
2. fine-tuning from ImageNet weights: the 1000-way last layer replaced by a new (classes + 1)-way
   one (N(0, 0.01)); windows (proposals + ground truth) with IoU >= 0.5 to a ground-truth box are
   positives of its class, the rest background; batches of 1/4 positives and 3/4 background,
   each window dilated by 16 px of context, warped to the input size, Caffe pixels, mirrored
   with probability 1/2; the recipe's SGD and step schedule, epochs counting windows;
3. the window classifier: ``softmax``, the fine-tuned layer's class probabilities; or ``svm``,
   one linear SVM per class on fc7 features scaled to a mean L2 norm of 20 (as the released
   code scales them), positives the ground-truth boxes, negatives windows below 0.3 IoU to every
   box of the class, mined hard (score > -1) in a pass over the training images with a retrain
   every ``retrain_limit`` new negatives of a class (easy ones, below -1.2, evicted) and at the
   end (repro.methods.rcnn.svm);
4. test: every proposal of each eval image scored, greedy NMS at 0.3 per class, VOC07 11-point
   mAP (difficult objects ignored) by ``repro.evaluation.voc.evaluate_voc``.

`proposal_counts` gives the dataset suite's "proposals per image" of a split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from repro.config import AccuracySettings
from repro.data.voc import VocDetection, to_devkit_box
from repro.errors import ReproError
from repro.evaluation.voc import evaluate_voc
from repro.evaluation.weights import load_weights
from repro.methods.rcnn.detector import cut_head, per_class_nms
from repro.methods.rcnn.regions import (
    ImageStore,
    Proposals,
    Windows,
    load_proposals,
    proposal_cache_dir,
    split_items,
    warp_windows,
)
from repro.methods.rcnn.svm import (
    FEATURE_NORM,
    HARD_NEGATIVE,
    SVM_C,
    SvmBank,
    scaled,
    window_features,
)
from repro.models import build_model
from repro.recipes import Recipe

CLASSIFIERS = ("svm", "softmax")
FG_FRACTION = 0.25  # 32 of 128 windows per batch are positives
MAX_PER_IMAGE = 100  # detections kept per class and image after NMS (a memory cap)


class WindowNet(nn.Module):
    """The CNN cut below its last layer (``body``: a window -> fc7) and the new classifier."""

    def __init__(self, body: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def window_net(
    recipe: Recipe, weights: str, classes: int, build: Callable[[], nn.Module] | None
) -> WindowNet:
    """The recipe's ImageNet network with ``weights`` loaded and a new (classes + 1)-way layer."""
    if build is None:
        kwargs = {k: v for k, v in recipe.model_kwargs.items() if k != "num_classes"}
        model = build_model(recipe.model, **kwargs)
    else:
        model = build()
    load_weights(model, weights)
    old = cut_head(model)
    head = nn.Linear(old.in_features, classes + 1)
    nn.init.normal_(head.weight, 0.0, 0.01)
    nn.init.zeros_(head.bias)
    return WindowNet(model, head)


@dataclass
class Batch:
    windows: torch.Tensor  # (B, 3, S, S)
    labels: torch.Tensor


class WindowSampler:
    """Random fine-tuning batches: ``fg`` positives and the rest background, drawn uniformly
    (with replacement) from all windows of the training images."""

    def __init__(self, windows: list[Windows], batch: int, generator: torch.Generator) -> None:
        pairs = [
            torch.stack([torch.full_like(w.labels, i), torch.arange(len(w.labels))], 1)
            for i, w in enumerate(windows)
        ]
        every = torch.cat(pairs) if pairs else torch.zeros(0, 2, dtype=torch.int64)
        labels = torch.cat([w.labels for w in windows]) if windows else torch.zeros(0)
        self.fg, self.bg = every[labels > 0], every[labels == 0]
        self.windows, self.batch, self.generator = windows, batch, generator
        self.fg_count = min(batch, round(batch * FG_FRACTION)) if len(self.fg) else 0
        if len(self.bg) == 0 and self.fg_count == 0:
            raise ReproError(
                "the training split has no windows to fine-tune on.",
                "check the split's images decode and have proposals.",
            )
        if len(self.bg) == 0:
            self.fg_count = batch

    @property
    def total(self) -> int:
        return len(self.fg) + len(self.bg)

    def _draw(self, pool: torch.Tensor, count: int) -> torch.Tensor:
        return pool[torch.randint(len(pool), (count,), generator=self.generator)]

    def sample(
        self, store: ImageStore, size: int, mirror: bool, device: torch.device
    ) -> Batch | None:
        chosen = torch.cat(
            [self._draw(self.fg, self.fg_count), self._draw(self.bg, self.batch - self.fg_count)]
        )
        crops, labels = [], []
        for image_index in chosen[:, 0].unique().tolist():
            win = self.windows[image_index]
            image = store.get(win.path)
            if image is None:
                continue
            rows = chosen[chosen[:, 0] == image_index, 1]
            flip = torch.rand(len(rows), generator=self.generator) < 0.5 if mirror else None
            crops.append(
                warp_windows(image.to(device), win.boxes[rows].to(device), size, flip=flip)
            )
            labels.append(win.labels[rows])
        if not crops:
            return None
        return Batch(torch.cat(crops), torch.cat(labels).to(device))


Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (image, boxes) -> (N, C)


def softmax_scorer(net: WindowNet, size: int, device: torch.device) -> Scorer:
    net.eval().to(device)

    def score(image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        features = window_features(net.body, image, boxes, size, device)
        return net.head.cpu()(features).softmax(dim=1)[:, 1:] if len(features) else features

    return score


def svm_scorer(body: nn.Module, bank: SvmBank, size: int, device: torch.device) -> Scorer:
    body.eval().to(device)

    def score(image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        features = window_features(body, image, boxes, size, device)
        scores = torch.from_numpy(bank.scores(scaled(features, bank.scale)))
        scores[:, ~torch.from_numpy(bank.trained)] = -math.inf
        return scores

    return score


Detections = dict[str, list[tuple[str, float, tuple[float, float, float, float]]]]


def detect(
    score: Scorer, windows: list[Windows], store: ImageStore, class_names: list[str]
) -> Detections:
    """Every window of every image scored, greedy NMS 0.3 per class, the top MAX_PER_IMAGE of
    each class and image kept; boxes in the devkit's 1-based convention."""
    found: Detections = {name: [] for name in class_names}
    with torch.inference_mode():
        for win in tqdm(windows, desc="detect", unit="image"):
            image = store.get(win.path)
            if image is None or len(win.boxes) == 0:
                continue
            boxes, scores, labels = per_class_nms(win.boxes, score(image, win.boxes))
            kept = [0] * len(class_names)
            rows = zip(boxes.tolist(), scores.tolist(), labels.tolist(), strict=True)
            for box, value, cls in rows:
                if math.isfinite(value) and kept[cls] < MAX_PER_IMAGE:
                    kept[cls] += 1
                    found[class_names[cls]].append((win.image_id, value, to_devkit_box(box)))
    return found


def dataset_split(root: str, split: str) -> VocDetection:
    if "+" in split:
        raise ReproError(
            f"R-CNN trains on one split, not {split!r}.",
            "give the recipe a single train_split (e.g. trainval).",
        )
    return VocDetection(root, split)


def split_proposals(
    dataset: VocDetection,
    name: str,
    root: str,
    limit: int | None,
    base: Path,
    processes: int | None,
) -> Proposals:
    cache = proposal_cache_dir(base, name, root, dataset.split)
    items = split_items(dataset, limit)
    return load_proposals(items, cache, processes, desc=f"selective search {dataset.split}")


def classifier_of(recipe: Recipe) -> str:
    """The recipe's window classifier: its name carries it (the schema has no field for it)."""
    return recipe.named_choice(CLASSIFIERS, "R-CNN window classifier", "rcnn-alexnet-svm-voc2007")


def voc07_map(
    eval_set: VocDetection,
    test: list[Windows],
    store: ImageStore,
    detections: Detections,
    names: list[str],
) -> float:
    bad = set(store.corrupt)
    scored = {w.image_id for w in test if str(w.path) not in bad}
    annotations = {i: a for i, a in eval_set.annotations.items() if i in scored}
    result = evaluate_voc(annotations, detections, metric="voc07", classes=names)
    if result["mAP"] is None:
        raise ReproError(
            f"the evaluated images of {eval_set.root} ({eval_set.split}) hold no non-difficult "
            "object, so mAP is undefined.",
            "evaluate on more images (raise accuracy.eval_limit).",
        )
    return 100.0 * float(result["mAP"])


def protocol_note(
    recipe: Recipe,
    classifier: str,
    weights: str,
    settings: AccuracySettings,
    props: dict[str, Proposals],
    store: ImageStore,
    test: list[Windows],
    batch: int,
    retrain_limit: int,
) -> str:
    kind = (
        f"per-class LinearSVC (C={SVM_C:g}, scikit-learn's default as in the transfer protocol; "
        f"the released code used C=1e-3) on fc7 features scaled to mean L2 norm "
        f"{FEATURE_NORM:g}, hard negatives (> {HARD_NEGATIVE:g}) mined in one pass, retrained "
        f"every {retrain_limit} new negatives of a class"
        if classifier == "svm"
        else "the fine-tuned softmax layer scores the windows"
    )
    corrupt = sorted(set(props["train"].corrupt + props["eval"].corrupt + store.corrupt))
    parts = [
        f"R-CNN from ImageNet weights {Path(weights).name}: selective search (fast mode) "
        f"proposals; fine-tuned on {recipe.train_split} windows ({batch} per batch, "
        f"{round(batch * FG_FRACTION)} positive) in-process on one "
        f"{'GPU' if settings.use_gpu else 'CPU'} (no Ray data parallelism); {kind}; "
        f"NMS 0.3 per class, VOC07 11-point mAP on {len(test)} {recipe.eval_split} images; "
        "no bounding-box regression; difficult objects are neither fine-tuning nor SVM "
        f"positives; at most {MAX_PER_IMAGE} detections per class and image"
    ]
    if settings.eval_limit:
        parts.append(f"eval limited to the first {settings.eval_limit} images")
    if corrupt:
        parts.append(f"{len(corrupt)} image(s) did not decode and were skipped")
    return "; ".join(parts)


def proposal_counts(
    root: str,
    split: str,
    limit: int | None = None,
    cache_dir: Path | None = None,
    processes: int | None = None,
) -> list[int]:
    """Selective-search (fast mode) proposals, duplicates removed, of each image of a VOC split
    (its first ``limit``) that decodes. ``cache_dir``: this split's proposal folder (see
    ``proposal_cache_dir``), None: no cache."""
    dataset = dataset_split(root, split)
    found = load_proposals(split_items(dataset, limit), cache_dir, processes)
    if not found.boxes:
        raise ReproError(
            f"no image of {root} ({split}) decoded, so no proposals were counted.",
            "check the split's images (`repro data verify`).",
        )
    return [len(b) for b in found.boxes.values()]
