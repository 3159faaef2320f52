"""R-CNN's per-class linear SVMs on fc7 features, trained by hard negative mining (Girshick et
al. 2014, Section 2.3; the released code's rcnn_train.m for the mining schedule).

Features are scaled so that their mean L2 norm over the windows of the first training images is
20 (the released code's feature scaling). Positives of a class are its non-difficult
ground-truth boxes; negatives are windows below 0.3 IoU to every box of the class. One pass over
the training images scores each image's windows with the current SVMs, caches the negatives
scoring above -1 (hard), and retrains a class once more than ``retrain_limit`` new ones have
arrived, evicting cached negatives scoring below -1.2; every class is retrained at the end.
scikit-learn's LinearSVC with C = 1 (its default, as repro.methods.transfer); the released code
used liblinear with C = 1e-3, a bias multiplier of 10 and positives weighted x2.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import LinearSVC
from torch import nn
from tqdm import tqdm

from repro.errors import ReproError
from repro.methods.rcnn.regions import ImageStore, Windows, svm_negatives, warp_windows

SVM_C = 1.0  # scikit-learn's default, as repro.methods.transfer; the released code: 1e-3
FEATURE_NORM = 20.0  # fc7 features scaled to this mean L2 norm (released code)
NORM_SAMPLE_IMAGES = 20  # training images whose windows estimate the mean norm
HARD_NEGATIVE = -1.0  # a negative scoring above this is hard
EVICT = -1.2  # cached negatives scoring below this after a retrain are dropped
RETRAIN_LIMIT = 2000  # new hard negatives of a class before it is retrained
FEATURE_BATCH = 256


def window_features(
    body: nn.Module,
    image: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    device: torch.device,
) -> torch.Tensor:
    """fc7 features (N, D), float32 on the CPU, of the windows ``boxes`` of a uint8 image."""
    image = image.to(device)
    out = [
        body(warp_windows(image, boxes[i : i + FEATURE_BATCH].to(device), size)).float().cpu()
        for i in range(0, len(boxes), FEATURE_BATCH)
    ]
    return torch.cat(out) if out else torch.zeros(0, 0)


class SvmBank:
    """One linear SVM per class on scaled fc7 features, trained by hard negative mining."""

    def __init__(self, classes: int, retrain_limit: int = RETRAIN_LIMIT) -> None:
        self.classes, self.retrain_limit = classes, retrain_limit
        self.scale = 1.0
        self.weight: np.ndarray | None = None  # (C, D)
        self.bias = np.zeros(classes, dtype=np.float32)
        self.trained = np.zeros(classes, dtype=bool)
        self.rounds = 0

    def scores(self, features: np.ndarray) -> np.ndarray:
        assert self.weight is not None
        return features @ self.weight.T + self.bias

    def fit_class(self, cls: int, positives: np.ndarray, negatives: np.ndarray) -> None:
        if len(positives) == 0 or len(negatives) == 0:
            return
        x = np.concatenate([positives, negatives])
        y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
        svm = LinearSVC(C=SVM_C, max_iter=10_000).fit(x, y)
        assert self.weight is not None
        self.weight[cls], self.bias[cls] = svm.coef_[0], svm.intercept_[0]
        self.trained[cls] = True


def scaled(features: torch.Tensor, scale: float) -> np.ndarray:
    return (features * scale).numpy()


def train_svms(
    body: nn.Module,
    windows: list[Windows],
    store: ImageStore,
    classes: int,
    size: int,
    device: torch.device,
    retrain_limit: int = RETRAIN_LIMIT,
) -> SvmBank:
    """Per-class SVMs: ground-truth positives; negatives mined in one pass over the images."""
    bank = SvmBank(classes, retrain_limit)
    body.eval().to(device)
    feats: dict[int, torch.Tensor] = {}
    positives: list[list[np.ndarray]] = [[] for _ in range(classes)]
    norms = []
    with torch.inference_mode():
        for i, win in enumerate(tqdm(windows, desc="SVM positives", unit="image")):
            image = store.get(win.path)
            if image is None:
                continue
            boxes, labels = win.positives
            if i < NORM_SAMPLE_IMAGES:
                feats[i] = window_features(body, image, win.boxes, size, device)
                norms.append(feats[i].norm(dim=1))
            if len(boxes):
                pos = window_features(body, image, boxes, size, device).numpy()
                for row, cls in enumerate(labels.tolist()):
                    positives[cls].append(pos[row])
        if not norms:
            raise ReproError("no training image decoded.", "check the training split's images.")
        bank.scale = FEATURE_NORM / max(float(torch.cat(norms).mean()), 1e-12)
        dim = next(iter(feats.values())).shape[1]
        bank.weight = np.zeros((classes, dim), dtype=np.float32)
        pos = [np.stack(p) * bank.scale if p else np.zeros((0, dim), np.float32) for p in positives]
        _mine(bank, body, windows, store, feats, pos, size, device)
    return bank


def _mine(
    bank: SvmBank,
    body: nn.Module,
    windows: list[Windows],
    store: ImageStore,
    cached: dict[int, torch.Tensor],
    positives: list[np.ndarray],
    size: int,
    device: torch.device,
) -> None:
    negatives: list[dict[tuple[int, int], np.ndarray]] = [{} for _ in range(bank.classes)]
    fresh = [0] * bank.classes

    def retrain(cls: int) -> None:
        keys = list(negatives[cls])
        neg = np.stack([negatives[cls][k] for k in keys]) if keys else np.zeros((0, 1))
        bank.fit_class(cls, positives[cls], neg)
        if keys and bank.trained[cls]:
            easy = neg @ bank.weight[cls] + bank.bias[cls] < EVICT  # type: ignore[index]
            for k, drop in zip(keys, easy, strict=True):
                if drop:
                    del negatives[cls][k]
        fresh[cls] = 0
        bank.rounds += 1

    for i, win in enumerate(tqdm(windows, desc="hard negatives", unit="image")):
        image = store.get(win.path)
        if image is None:
            continue
        features = cached.pop(i, None)
        if features is None:
            features = window_features(body, image, win.boxes, size, device)
        x = scaled(features, bank.scale)
        scores = bank.scores(x)
        for cls in range(bank.classes):
            hard = svm_negatives(win.boxes, win.gt_boxes, win.gt_labels, cls).numpy()
            hard &= scores[:, cls] > HARD_NEGATIVE
            for row in np.flatnonzero(hard):
                if (i, int(row)) not in negatives[cls]:
                    negatives[cls][(i, int(row))] = x[row]
                    fresh[cls] += 1
            if fresh[cls] > bank.retrain_limit:
                retrain(cls)
    for cls in range(bank.classes):
        if fresh[cls] or not bank.trained[cls]:
            retrain(cls)
