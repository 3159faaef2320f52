"""DeCAF's transfer protocol (Donahue et al. 2014): a linear classifier on the frozen activations
of one layer of an ImageNet-trained network, scored on SUN-397's partitions.

Per partition: every image of its training and test lists goes once through the network (eval
mode: dropout off) at the recipe's evaluation resize and centre crop, normalized with ImageNet's
statistics as the accuracy suite's ImageNet training does; the output of each claimed layer
(``fc6``/``fc7``: after its ReLU) is that image's feature. A multinomial logistic regression or a
one-vs-rest linear SVM (scikit-learn's LogisticRegression / LinearSVC, solved to convergence with
their default regularisation C = 1: the paper gives no solver settings) is fit on the training
features and scored on the test features. The claims are means over partitions, so every
partition is one run of the suite's statistics.

Images that do not decode are counted and skipped (named in the log and in the result's note).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from repro.claims import Claim
from repro.config import AccuracySettings
from repro.data import sun397
from repro.data.training_sets import NORMALIZATION
from repro.errors import ReproError
from repro.evaluation.classification import SkipUnreadable, collate_skipping, eval_transform
from repro.evaluation.weights import load_weights
from repro.models import build_model
from repro.recipes import Recipe

log = logging.getLogger("repro.accuracy")

CLASSIFIERS = {
    "logreg": "multinomial logistic regression (scikit-learn LogisticRegression, lbfgs, C=1)",
    "svm": "one-vs-rest linear SVM (scikit-learn LinearSVC, squared hinge, C=1)",
}
TRANSFER_DATASETS = ("sun397",)
TRANSFER_METRIC = "accuracy"


def classifier_of(recipe: Recipe) -> str:
    """The recipe's linear classifier: its name carries it (the schema has no field for it)."""
    return recipe.named_choice(
        CLASSIFIERS, "linear classifier for the transfer protocol", "decaf-logreg-sun397"
    )


def metric_key(layer: str) -> str:
    return f"{TRANSFER_METRIC}@{layer}"


class _Images:
    """(image tensor, index) of a list of files."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Any], Any]) -> None:
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), index


def extract_features(
    model: torch.nn.Module,
    layers: Sequence[str],
    paths: Sequence[Path],
    transform: Callable[[Any], Any],
    *,
    device: str = "cpu",
    batch_size: int = 64,
    loader_workers: int = 2,
    skipped: list[str] | None = None,
) -> tuple[dict[str, np.ndarray], list[int]]:
    """({layer: (n, d) activations}, indices of ``paths`` that decoded), in ``paths`` order; the
    paths that did not decode are added to ``skipped``."""
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ReproError(
            f"{type(model).__name__} has no layer {', '.join(missing)}.",
            "name a module of the model in the claim's `layer` (see `repro models --layers`).",
        )
    captured: dict[str, list[Any]] = {name: [] for name in layers}
    hooks = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured[name].append(out.flatten(1).float().cpu())
        )
        for name in layers
    ]
    loader = DataLoader(
        SkipUnreadable(_Images(paths, transform)),
        batch_size=batch_size,
        num_workers=loader_workers,
        collate_fn=collate_skipping,
    )
    kept: list[int] = []
    model.eval().to(device)
    try:
        with torch.inference_mode():
            for images, indices, bad in tqdm(loader, desc="features", unit="batch"):
                for item in bad:
                    log.warning("corrupt-image: %s: does not decode; skipped", paths[item.index])
                    if skipped is not None:
                        skipped.append(str(paths[item.index]))
                if images is not None:
                    model(images.to(device))
                    kept += indices.tolist()
    finally:
        for hook in hooks:
            hook.remove()
    features = {
        name: (torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), dtype=np.float32))
        for name, chunks in captured.items()
    }
    return features, kept


def linear_accuracy(
    kind: str,
    train_x: np.ndarray,
    train_y: Sequence[int],
    test_x: np.ndarray,
    test_y: Sequence[int],
) -> float:
    """Test accuracy (%) of ``kind`` (a key of CLASSIFIERS) fit on the training features."""
    from sklearn.svm import LinearSVC

    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        classifier: Any = LogisticRegression(max_iter=2000)
    elif kind == "svm":
        classifier = LinearSVC(max_iter=10_000)
    else:
        raise ReproError(f"unknown linear classifier {kind!r}.", f"use {', '.join(CLASSIFIERS)}.")
    if len(set(train_y)) < 2:
        raise ReproError(
            "the transfer training split holds fewer than 2 classes.",
            "check the dataset's partition lists.",
        )
    classifier.fit(train_x, np.asarray(train_y))
    return 100.0 * float((classifier.predict(test_x) == np.asarray(test_y)).mean())


def measure_transfer(
    recipe: Recipe,
    claims: Sequence[Claim],
    root: str,
    weights: str,
    settings: AccuracySettings,
    *,
    partitions: Sequence[int] | None = None,
    loader_workers: int = 2,
) -> tuple[list[dict[str, float]], str]:
    """Per partition {"accuracy@<layer>": %} for the claims' layers, and a note on the protocol.
    ``settings.seeds`` > 1 is irrelevant here (nothing random is trained); the partitions are the
    runs. ``settings.eval_limit`` keeps the first N images of each list (a trial run)."""
    if recipe.dataset not in TRANSFER_DATASETS:
        raise ReproError(
            f"the transfer protocol reads {', '.join(TRANSFER_DATASETS)}, not {recipe.dataset}.",
            "set the recipe's dataset to sun397.",
        )
    kind = classifier_of(recipe)
    layers = sorted({str(c.layer) for c in claims})
    found = sun397.available_partitions(root)
    chosen = list(partitions or found)
    absent = [k for k in chosen if k not in found]
    if not chosen or absent:
        raise ReproError(
            f"SUN-397 partition(s) {absent or chosen} not found under {root}.",
            "unpack the Partitions archive (Training_01.txt .. Testing_10.txt) beside "
            "ClassName.txt.",
        )
    e = recipe.evaluation
    base = eval_transform(e.resize, e.crop, 1, normalize=False)
    normalize = NORMALIZATION["imagenet"]
    model = build_model(recipe.model, **recipe.model_kwargs)
    load_weights(model, weights)
    device = "cuda" if settings.use_gpu else "cpu"
    cache: dict[Path, dict[str, Any]] = {}
    skipped: list[str] = []
    runs = []
    for k in chosen:
        sides = [sun397.load_split(root, k, split) for split in ("train", "test")]
        if settings.eval_limit:
            n = settings.eval_limit
            sides = [replace(s, paths=s.paths[:n], labels=s.labels[:n]) for s in sides]
        bad = set(skipped)
        todo = sorted({p for s in sides for p in s.paths if p not in cache and str(p) not in bad})
        if todo:
            feats, kept = extract_features(
                model,
                layers,
                todo,
                lambda im: normalize(base(im)),
                device=device,
                loader_workers=loader_workers,
                skipped=skipped,
            )
            for row, i in enumerate(kept):
                cache[todo[i]] = {name: feats[name][row] for name in layers}
        metrics = {}
        for name in layers:
            (tx, ty), (vx, vy) = (_stack(s, cache, name) for s in sides)
            metrics[metric_key(name)] = linear_accuracy(kind, tx, ty, vx, vy)
        log.info("SUN-397 partition %d: %s", k, metrics)
        runs.append(metrics)
    note = (
        f"weights {Path(weights).name}; {CLASSIFIERS[kind]} on frozen {', '.join(layers)} "
        f"activations, centre {e.crop} of resize {e.resize}; SUN-397 partitions {chosen}"
    )
    if settings.eval_limit:
        note += f", first {settings.eval_limit} images of each list"
    if skipped:
        note += f"; {len(skipped)} image(s) did not decode and were skipped"
    return runs, note


def _stack(split: Any, cache: dict[Path, dict[str, Any]], layer: str) -> tuple[Any, list[int]]:
    rows = [
        (cache[p][layer], y) for p, y in zip(split.paths, split.labels, strict=True) if p in cache
    ]
    if not rows:
        raise ReproError(
            f"no image of SUN-397 partition {split.partition} ({split.split}) decoded.",
            "check the image files (`repro data verify` lists corrupt ones).",
        )
    return np.stack([r for r, _ in rows]), [y for _, y in rows]
