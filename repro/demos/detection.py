"""The synthetic detection demo: a small YOLOv1-style detector trained and evaluated end to end
on a synthetic PASCAL VOC set of coloured shapes, on the CPU, in about a minute.

It exercises the whole detection path of the accuracy reproduction with real file formats and
the official protocols: `write_voc` writes devkit XML and split files, `VocDetection` reads
them, the detector trains on trainval only, and its detections on the held-out test split are
scored by `evaluate_voc` (VOC07 11-point and VOC2010 all-point mAP, difficult objects ignored
by the evaluator) and by `evaluate_coco` (pycocotools COCOeval, cross-checked with
faster-coco-eval) on `voc_to_coco` of the same split.
"""

from __future__ import annotations

import logging
import math
import time
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from repro import tracking
from repro.data.coco import voc_to_coco
from repro.data.detection_loaders import hflip_boxes
from repro.data.synth import write_voc
from repro.data.training_sets import dataset_digest
from repro.data.voc import VocDetection, load_split, voc_classes
from repro.demos import write_outputs
from repro.demos.detector import TinyYolo
from repro.errors import ReproError
from repro.evaluation.coco import evaluate_coco
from repro.evaluation.voc import evaluate_voc
from repro.methods.detection import as_rows, coco_results, voc_detections
from repro.methods.yolo_v1 import Detections, decode
from repro.tracking.training import TrainingRun, absolute_tracking_uri
from repro.train.detector_fit import grid_loss
from repro.train.system_log import DEFAULT_INTERVAL_S, system_log
from repro.train.trainer import Epoch, single_device, train_epoch

log = logging.getLogger("repro.demos")

CSV_COLUMNS = (
    "demo",
    "metric",
    "value",
    "images_train",
    "images_test",
    "epochs",
    "seconds",
    "device",
    "torch",
    "note",
)
ACCEPTANCE_METRIC, ACCEPTANCE_THRESHOLD = "voc07_map", 0.5
# The training run's curves (the curve is bookkeeping: a store failing mid-run does not stop
# the demo, see repro.tracking.training).
EPOCH_KEYS = ("loss", "lr", "voc07_map", "train_s", "eval_s", "images_per_s")
# Detections kept per image before evaluation: COCO's maxDets is 100; VOC has no limit.
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class DetectionDemoConfig:
    """Everything that decides the demo's numbers (with the seed)."""

    train_images: int = 640
    test_images: int = 200
    epochs: int = 4
    image_size: int = 96
    grid: int = 6
    boxes: int = 2
    width: int = 16
    batch_size: int = 16
    lr: float = 4e-3
    weight_decay: float = 5e-4
    score_threshold: float = 0.01
    nms_iou: float = 0.5


def _check_config(config: DetectionDemoConfig) -> None:
    for name in ("train_images", "test_images", "epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise ReproError(
                f"detection demo: {name} is {getattr(config, name)}; it must be at least 1.",
                f"pass a positive {name}.",
            )


def _load_split_tensors(voc_root: Path, split: str) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """A whole split in memory: images stacked (N, 3, H, W) and their targets."""
    dataset = VocDetection(voc_root, split)
    images, targets = zip(*(dataset[index] for index in range(len(dataset))), strict=True)
    return torch.stack(images), list(targets)


def _flip(
    images: torch.Tensor, boxes: list[torch.Tensor], flip: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Horizontal flip of the images where ``flip`` is true, and of their xyxy boxes."""
    flipped = images.where(~flip[:, None, None, None], images.flip(-1))
    width = images.shape[-1]
    out = [hflip_boxes(b, width) if f else b for b, f in zip(boxes, flip.tolist(), strict=True)]
    return flipped, out


def train_detector(
    model: TinyYolo,
    images: torch.Tensor,
    targets: list[dict[str, Any]],
    config: DetectionDemoConfig,
    seed: int,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """AdamW with a linear warm-up then cosine decay, random horizontal flips, YOLOv1's loss,
    through the project's training loop (repro.train.trainer). Returns each epoch's numbers
    (epoch from 1, mean loss, the last step's learning rate, train_s, images_per_s, time), each
    also handed to ``on_epoch`` (which may add to it) as soon as the epoch ends."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = min(steps_per_epoch, total // 4)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    def batches() -> Iterator[tuple[torch.Tensor, list[dict[str, torch.Tensor]]]]:
        order = torch.randperm(len(images), generator=generator)
        flips = torch.rand(len(images), generator=generator) < 0.5
        for start in range(0, len(images), config.batch_size):
            idx = order[start : start + config.batch_size]
            batch, boxes = _flip(images[idx], [targets[i]["boxes"] for i in idx], flips[idx])
            labels = [targets[i]["labels"] for i in idx]
            yield batch, [{"boxes": b, "labels": c} for b, c in zip(boxes, labels, strict=True)]

    pm = single_device(model, torch.device("cpu"), grid_loss(model.spec))
    history: list[dict[str, Any]] = []
    for epoch in range(config.epochs):
        t0 = time.perf_counter()

        def rate(step: int, first: int = epoch * steps_per_epoch) -> float:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * factor(first + step)
            return optimizer.param_groups[0]["lr"]

        stats = train_epoch(pm, optimizer, Epoch(batches(), rate))
        loss = sum(x.item() * n for x, n in zip(stats.losses, stats.sizes, strict=True))
        if not math.isfinite(loss):
            raise ReproError(
                f"detection demo: the training loss became {loss} (diverged).",
                "lower the learning rate (DetectionDemoConfig.lr).",
            )
        train_s = time.perf_counter() - t0
        entry = {
            "epoch": epoch + 1,
            "loss": loss / len(images),
            "lr": stats.lrs[-1],
            "train_s": train_s,
            "images_per_s": len(images) / train_s,
            "time": time.time(),
        }
        history.append(entry)
        if on_epoch is not None:
            on_epoch(entry)
    return history


def detect(model: TinyYolo, images: torch.Tensor, config: DetectionDemoConfig) -> list[Detections]:
    model.eval()
    out: list[Detections] = []
    with torch.no_grad():
        for start in range(0, len(images), 64):
            pred = model(images[start : start + 64])
            out += decode(
                pred,
                model.spec,
                score_threshold=config.score_threshold,
                nms_iou=config.nms_iou,
                max_per_image=MAX_DETECTIONS,
            )
    return out


def to_voc_detections(
    detections: list[Detections], image_ids: list[str], classes: list[str]
) -> dict[str, list[Any]]:
    """class -> [(image id, score, devkit box)] (repro.methods.detection.voc_detections)."""
    return voc_detections(as_rows(detections, image_ids), classes)


def to_coco_results(
    detections: list[Detections], image_ids: list[str], classes: list[str], gt: dict[str, Any]
) -> list[dict[str, Any]]:
    """A COCO results list over ``gt`` (voc_to_coco output): ids looked up by VOC id and class
    name, boxes [x, y, w, h] in the same pixel-edge coordinates."""
    image_of = {image["voc_id"]: image["id"] for image in gt["images"]}
    category_of = {cat["name"]: cat["id"] for cat in gt["categories"]}
    rows = [(image_of[i], *rest) for i, *rest in as_rows(detections, image_ids)]
    return coco_results(rows, [category_of[c] for c in classes])


def coco_ground_truth(voc_root: Path, split: str) -> dict[str, Any]:
    """voc_to_coco of the split with difficult objects marked iscrowd=1. COCOeval replaces the
    "ignore" flag voc_to_coco sets with iscrowd, so this is how the VOC protocol's "difficult
    objects neither help nor hurt" carries over to COCO AP (a detection matched to a crowd
    region is ignored, not a false positive)."""
    gt = voc_to_coco(voc_root, split)
    for ann in gt["annotations"]:
        if ann.get("ignore"):
            ann["iscrowd"] = 1
    return gt


def _metric_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    shared = {
        "demo": "detection",
        "images_train": result["images_train"],
        "images_test": result["images_test"],
        "epochs": result["config"]["epochs"],
        "seconds": round(result["seconds"]["total"], 2),
        "device": result["device"],
        "torch": result["torch"],
    }
    notes = {
        "voc07_map": "VOC07 11-point AP, IoU > 0.5, difficult ignored; test split",
        "voc2010_map": "VOC2010 all-point AP, IoU > 0.5, difficult ignored; test split",
        "coco_ap": "pycocotools AP@[.5:.95], difficult as iscrowd",
        "coco_ap50": "pycocotools AP@.5, difficult as iscrowd",
        "coco_ap75": "pycocotools AP@.75, difficult as iscrowd",
        "coco_cross_check_max_abs_diff": "faster-coco-eval vs pycocotools, all 12 stats",
    }
    return [
        {**shared, "metric": name, "value": result["metrics"][name], "note": note}
        for name, note in notes.items()
    ]


def _open_fit_log(
    uri: str | None,
    parent: str | None,
    config: DetectionDemoConfig,
    seed: int,
    voc_root: Path,
    train_x: torch.Tensor,
    test_x: torch.Tensor,
) -> TrainingRun:
    """The demo's training as an MLflow training run: a child of the demo's run in repro/demos
    (as the digits demo's fits are), with the loss, learning rate, images/s and the test
    split's VOC07 mAP per epoch (step = epoch), the splits as dataset inputs, and the host's
    CPU and memory sampled meanwhile (system/*); a split's digest is the content of its
    images, as the digits demo's."""
    if not (uri and parent):
        return TrainingRun(None, "", {}, {})
    datasets = [
        {
            "name": f"synthetic-voc/{split}",
            "context": context,
            "digest": dataset_digest(types.SimpleNamespace(images=images)),
            "source": str(voc_root),
            "images": len(images),
        }
        for split, context, images in (("trainval", "train", train_x), ("test", "eval", test_x))
    ]
    params = {**asdict(config), "seed": seed, "model": "TinyYolo", "optimizer": "AdamW"}
    name = f"detection-fit-{uuid.uuid4().hex[:8]}"  # one MLflow run per demo run
    tags = {"repro.kind": "fit", "mlflow.parentRunId": parent}
    system = system_log(None, DEFAULT_INTERVAL_S)
    return TrainingRun(uri, name, params, tags, tracking.DEMO_EXPERIMENT, datasets, system)


def run_detection_demo(
    out_dir: Path | None,
    *,
    work_dir: Path,
    seed: int = 0,
    train_images: int = DetectionDemoConfig.train_images,
    test_images: int = DetectionDemoConfig.test_images,
    epochs: int = DetectionDemoConfig.epochs,
    tracking_uri: str | None = None,
    config: DetectionDemoConfig | None = None,
    mlflow_parent: str | None = None,
) -> dict[str, Any]:
    """Write the synthetic VOC set under ``work_dir``, train on trainval, detect on test, score
    VOC07/VOC2010 mAP and COCO AP/AP50/AP75; write ``<out_dir>/detection.json`` and
    ``detection.csv`` when out_dir is given. With ``tracking_uri``, the training is a run with
    per-epoch curves, a child of ``mlflow_parent`` (the caller then logs the demo's numbers) or
    of the demo's own run, opened and logged here. ``config`` overrides the other settings (its
    counts win over train_images/test_images/epochs when given). Deterministic for a seed on one
    machine and thread count."""
    if config is None:
        config = DetectionDemoConfig(
            train_images=train_images, test_images=test_images, epochs=epochs
        )
    _check_config(config)
    if tracking_uri:
        tracking_uri = absolute_tracking_uri(tracking_uri)
        tracking.check_tracking_uri(tracking_uri)  # fail before the minute of work, not after
    started = time.perf_counter()
    voc_root = write_voc(
        Path(work_dir) / f"detection_voc_seed{seed}",
        splits={"trainval": config.train_images, "test": config.test_images},
        size=(config.image_size, config.image_size),
        seed=seed,
    )
    classes = voc_classes(voc_root)
    train_x, train_t = _load_split_tensors(voc_root, "trainval")
    test_x, test_t = _load_split_tensors(voc_root, "test")
    data_s = time.perf_counter() - started

    torch.manual_seed(seed)
    model = TinyYolo(
        len(classes),
        image_size=config.image_size,
        grid=config.grid,
        boxes=config.boxes,
        width=config.width,
    )
    image_ids = [t["image_id"] for t in test_t]
    annotations = load_split(voc_root, "test")
    parent = mlflow_parent
    if tracking_uri and parent is None:  # called alone: the demo's own run, opened first
        parent = tracking.open_parent(
            tracking_uri, tracking.DEMO_EXPERIMENT, "detection", {"repro.demo": "detection"}
        )
    fit = _open_fit_log(tracking_uri, parent, config, seed, voc_root, train_x, test_x)
    last: dict[str, Any] = {}

    def on_epoch(entry: dict[str, Any]) -> None:
        """The test split's VOC07 mAP after every epoch: the curve beside the loss; the last
        epoch's detections are the demo's final ones."""
        t0 = time.perf_counter()
        last["detections"] = detect(model, test_x, config)
        last["voc_dets"] = to_voc_detections(last["detections"], image_ids, classes)
        last["voc07"] = evaluate_voc(annotations, last["voc_dets"], metric="voc07", classes=classes)
        entry |= {"voc07_map": last["voc07"]["mAP"], "eval_s": time.perf_counter() - t0}
        fit.log([entry], EPOCH_KEYS, step="epoch")

    try:
        per_epoch = train_detector(model, train_x, train_t, config, seed, on_epoch)
        train_s = sum(e["train_s"] for e in per_epoch)
        detections, voc_dets, voc07 = last["detections"], last["voc_dets"], last["voc07"]
        voc10 = evaluate_voc(annotations, voc_dets, metric="voc2010", classes=classes)
        gt = coco_ground_truth(voc_root, "test")
        coco = evaluate_coco(gt, to_coco_results(detections, image_ids, classes, gt))
    except BaseException:
        fit.close({}, {}, "FAILED")
        if tracking_uri and parent and mlflow_parent is None:
            tracking.close_parent(tracking_uri, parent, {}, failed=True)
        raise
    total_s = time.perf_counter() - started

    cross = coco.get("cross_check", {})
    metrics = {
        "voc07_map": voc07["mAP"],
        "voc2010_map": voc10["mAP"],
        "coco_ap": coco["AP"],
        "coco_ap50": coco["AP50"],
        "coco_ap75": coco["AP75"],
        "coco_cross_check_max_abs_diff": cross.get("max_abs_diff"),
    }
    passed = metrics[ACCEPTANCE_METRIC] is not None and (
        metrics[ACCEPTANCE_METRIC] > ACCEPTANCE_THRESHOLD
    )
    result: dict[str, Any] = {
        "demo": "detection",
        "seed": seed,
        "metrics": metrics,
        "acceptance": {
            "metric": ACCEPTANCE_METRIC,
            "threshold": ACCEPTANCE_THRESHOLD,
            "passed": passed,
        },
        "per_class": {
            "voc07_ap": {c: v["ap"] for c, v in voc07["per_class"].items()},
            "voc2010_ap": {c: v["ap"] for c, v in voc10["per_class"].items()},
            "coco_ap": coco["per_class"],
            "npos": {c: v["npos"] for c, v in voc07["per_class"].items()},
        },
        "coco_stats": {k: coco[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")},
        "coco_cross_check": cross,
        "detections": sum(len(d.scores) for d in detections),
        "loss_per_epoch": [e["loss"] for e in per_epoch],
        "per_epoch": per_epoch,
        "images_train": len(train_x),
        "images_test": len(test_x),
        "classes": classes,
        "config": asdict(config),
        "seconds": {
            "data": data_s,
            "train": train_s,
            "evaluate": total_s - data_s - train_s,
            "total": total_s,
        },
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "voc_root": str(voc_root),
    }
    files: tuple[Path, ...] = ()
    if out_dir is not None:
        files = write_outputs(Path(out_dir), "detection", result, CSV_COLUMNS, _metric_rows(result))
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    if fit.active:
        fit.close(numbers, {})
        result["mlflow_fit_run_id"] = fit.run_id
    if tracking_uri and parent and mlflow_parent is None:  # else the caller logs the demo's run
        result["mlflow_run_id"] = tracking.log_demo(
            tracking_uri,
            "detection",
            {**numbers, "seconds": total_s},
            {**result["config"], "seed": seed, "device": "cpu"},
            [str(f) for f in files],
            parent,
        )
    log.info(
        "detection demo: VOC07 mAP %.3f, VOC2010 mAP %.3f, COCO AP %.3f in %.1f s",
        metrics["voc07_map"] or 0.0,
        metrics["voc2010_map"] or 0.0,
        metrics["coco_ap"],
        total_s,
    )
    return result
