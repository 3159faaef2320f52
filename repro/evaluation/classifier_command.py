"""`repro eval classifier`: a classifier's top-1/top-5 error on an image-folder split (ImageNet's
layout) or an MNIST-format set's (Fashion-MNIST, MNIST), its weights from a file; the JSON result
to stdout."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import Subset

from repro.data.imagenet import ImageNetSplit
from repro.data.problems import Problems
from repro.data.training_sets import mnist_format
from repro.errors import ReproError
from repro.evaluation.classification import eval_transform, evaluate_classifier
from repro.evaluation.weights import load_weights
from repro.models import build_model, get_model_spec

log = logging.getLogger("repro.evaluation")


def _spread_indices(count: int, limit: int | None) -> list[int] | None:
    """``limit`` indices spread evenly over ``count`` samples (so every class folder of a
    sorted split is visited), or None for all of them."""
    if limit is None or limit >= count:
        return None
    if limit < 1:
        raise ReproError(f"--limit {limit} is not positive.", "pass e.g. --limit 1000.")
    step = count / limit
    return [int(i * step) for i in range(limit)]


def run(args: argparse.Namespace) -> int:
    """Score ``args.weights`` of ``args.model`` on an image-folder split; the JSON to stdout."""
    spec = get_model_spec(args.model)
    if spec.task != "classification":
        raise ReproError(
            f"{args.model} is a {spec.task} model, not a classifier.",
            "use `repro eval detections` for detectors; `repro models` lists the classifiers.",
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ReproError("--device cuda: torch sees no CUDA device here.", "use --device cpu.")
    # --crop defaults to the model's input size; --resize to crop / 0.875 (256 for 224).
    crop = args.crop or int(spec.input_size[-1])
    resize = args.resize or round(crop / 0.875)
    channels = int(spec.input_size[0])
    problems = Problems()
    idx = mnist_format(args.data, args.split or "test", crop, channels)
    if idx is not None:  # the protocol of the set's benchmark: the whole image, one crop
        if args.crops != 1 or args.resize or args.labels:
            raise ReproError(
                f"{args.data} holds an MNIST-format set, scored on its whole image: "
                "--crops 10, --resize and --labels do not apply.",
                "leave them out (--crop sets the network's input side).",
            )
        split, classes, name = idx
        args.split, resize = args.split or "test", None
    else:
        transform = eval_transform(resize, crop, args.crops, channels=channels)
        labels = Path(args.labels) if args.labels else None
        args.split = args.split or "val"
        split = ImageNetSplit(args.data, args.split, transform, labels=labels, problems=problems)
        classes, name = split.classes, "image folder"
    if not classes or not len(split):
        raise ReproError(
            f"split {args.split!r} of {args.data} holds no labelled images.",
            "pass the dataset root holding <split>/<class>/*.JPEG, or a flat <split>/ folder "
            "with --labels; `repro data verify imagenet` shows what is there.",
        )
    try:
        model = build_model(args.model, num_classes=len(classes))
    except (TypeError, ValueError) as exc:
        raise ReproError(
            f"model {args.model} cannot be built with num_classes={len(classes)} "
            f"(the classes of {args.data}/{args.split}): {exc}",
            "evaluate on a dataset with the class count the model supports, or register a "
            "builder taking num_classes.",
        ) from None
    weights = load_weights(model, args.weights)
    indices = _spread_indices(len(split), args.limit)
    dataset = split if indices is None else Subset(split, indices)
    result = evaluate_classifier(
        model,
        dataset,
        crops=args.crops,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if len(problems):
        log.warning("%s: %d dataset problem(s) %s", args.data, len(problems), problems.counts())
    out = {
        "model": args.model,
        "data": str(args.data),
        "dataset": name,
        "split": args.split,
        "classes": len(classes),
        "split_images": len(split),
        "resize": resize,
        "crop": crop,
        "weights": weights,
        "dataset_problems": problems.counts(),
        **result,
    }
    print(json.dumps(out, indent=2))
    return 0
