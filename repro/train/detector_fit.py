"""Train a registered detector by a paper's recipe, data-parallel, and evaluate it by the
recipe's protocol.

`fit_detector(config)` is `repro.train.fit.fit` for detectors: the same worker loop (Ray
Train workers, or in-process with ``workers == 0``; every seed in one worker group; the global
batch of each step cut into the ranks' slices by EpochShard; the recipe's optimizer and learning
rate schedule; a checkpoint after every epoch that a rerun resumes from; MLflow per seed), with
the detector's data (repro.data.detection_loaders), loss and evaluation:

- ``yolov1`` / ``fast_yolo``: YOLOv1's sum-squared loss (lambda_coord 5, lambda_noobj 0.5) on the
  7x7 grid (repro.methods.yolo_v1), images resized to the recipe's input square;
- ``yolov2``: YOLOv2's anchor-box region loss (direct location prediction on dimension-cluster
  priors, IoU objectness, softmax classes; repro.methods.yolo_v2), images resized to the
  recipe's input square (any multiple of 32: the network is fully convolutional);
- ``faster_rcnn_vgg16`` / ``faster_rcnn_zf``: the sum of torchvision's loss dict (RPN objectness
  and box regression, Fast R-CNN classification and box regression), images as they are.

After each seed's last epoch every rank detects its shard of the evaluation split, rank 0
gathers the detections and scores them (VOC07 11-point or VOC2010 mAP, or COCO AP/AP50) with
`repro.methods.detection.score_rows`, the function `evaluate_detector` uses on saved weights.

Deviations from the papers, written into every seed record's ``note``: the networks start from
random weights (the papers fine-tune ImageNet-pretrained convolutions; YOLOv2's also at 448x448
before detection), YOLOv2 trains at the recipe's one input size instead of the paper's
multi-scale training, and Faster R-CNN trains RPN and detector jointly in one network
("approximate joint training", the paper's Section 3.2 alternative) instead of the 4-step
alternating training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from repro.data.detection_loaders import (
    DETECTION_DATASETS,
    check_augmentation,
    loader,
    open_split,
    recipe_datasets,
    shard_indices,
    train_transform,
    training_set,
)
from repro.errors import DataError
from repro.methods import yolo_v1, yolo_v2
from repro.methods.detection import (
    GRID_DETECTORS,
    GRID_EVAL_BATCH,
    REGION_DETECTORS,
    SQUARE_DETECTORS,
    TRAINABLE_DETECTORS,
    anchor_spec,
    build_detector,
    detect_rows,
    grid_spec,
    score_rows,
)
from repro.models import get_model_spec
from repro.recipes import Recipe
from repro.train.config import FitConfig, FitResult, TrainConfig, need
from repro.train.distributed import launch, resolve
from repro.train.loop import Loss, ModelSetup
from repro.train.parallelize import parallelize
from repro.train.recipe_loop import (
    DataPlan,
    RecipeTask,
    SeedRun,
    check_run_settings,
    effective_recipe,
    epoch_sampler,
    run_worker,
    seed_run,
)
from repro.train.session import WorkerSession

WORKER_FN = "repro.train.detector_fit:detector_fit_worker"
# What the harness lacks to train the other detectors the papers name.
TRAINING_GAPS = {
    "yolov3": "YOLOv3's multi-scale anchor loss (logistic objectness, per-scale anchor "
    "assignment) is not implemented",
}
NO_PRETRAINING = "no ImageNet pre-training: the network starts from random weights"
NO_PRETRAINING_V2 = (
    "no ImageNet pre-training (nor the paper's 448x448 high-resolution classifier fine-tuning): "
    "the network starts from random weights"
)
FIXED_SIZE = (
    "one fixed input size (the recipe's input_size) instead of the paper's multi-scale "
    "training (a new size from {320, 352, ..., 608} every 10 batches)"
)
JOINT_TRAINING = (
    "approximate joint training (RPN and Fast R-CNN losses summed in one network) instead of "
    "the paper's 4-step alternating training"
)


def training_gap(model: str) -> str | None:
    """Why the harness cannot train the detector ``model`` by a recipe, or None if it can."""
    if model in TRAINABLE_DETECTORS:
        return None
    if get_model_spec(model).task == "classification":
        return (
            f"{model} is a classification network: a detection recipe on it is R-CNN's "
            "selective-search pipeline (repro.train.rcnn), not a detector training"
        )
    return TRAINING_GAPS.get(
        model,
        f"detector training covers {', '.join(TRAINABLE_DETECTORS)}; {model} has no "
        "training loss in the harness",
    )


def deviations(model: str) -> str:
    """The documented ways a recipe run of ``model`` differs from its paper's training."""
    if model in GRID_DETECTORS:
        return f"deviations: {NO_PRETRAINING}"
    if model in REGION_DETECTORS:
        return f"deviations: {NO_PRETRAINING_V2}; {FIXED_SIZE}"
    return f"deviations: {NO_PRETRAINING}; {JOINT_TRAINING}"


@dataclass
class DetectorFitConfig(FitConfig):
    # Roots of the other datasets the recipe's train_split names (e.g. {"voc2012": ROOT});
    # ``data_root`` is the recipe's own dataset's.
    data_roots: dict[str, str] = field(default_factory=dict)
    eval_limit: int | None = None  # evaluate on the first N images of the eval split only


def data_roots(config: DetectorFitConfig, recipe: Recipe) -> dict[str, str | None]:
    """Every dataset the recipe reads -> its root from the config (None if none is given)."""
    return {
        name: config.data_root if name == recipe.dataset else config.data_roots.get(name)
        for name in recipe_datasets(recipe)
    }


def validate(config: DetectorFitConfig) -> None:
    """Reject what cannot run before any worker starts."""
    recipe = effective_recipe(config)
    get_model_spec(recipe.model)  # an unknown model names itself
    gap = training_gap(recipe.model)
    need(
        gap is None,
        f"recipe {recipe.name} cannot train {recipe.model}: {gap}.",
        "supply trained weights (params.yaml `weights:` or --weights MODEL=PATH) to evaluate it.",
    )
    need(
        recipe.dataset in DETECTION_DATASETS,
        f"recipe {recipe.name}: detectors train on {', '.join(DETECTION_DATASETS)}, not "
        f"{recipe.dataset!r}.",
        "set the recipe's `dataset` to one of them.",
    )
    check_augmentation(recipe)
    need(
        recipe.schedule.name != "plateau",
        f"recipe {recipe.name}: a plateau schedule needs a validation error every epoch, and "
        "detector training evaluates once, after the last epoch.",
        "use a step, multistep, poly, cosine or constant schedule.",
    )
    if recipe.model in GRID_DETECTORS:
        need(
            recipe.input_size == recipe.evaluation.crop,
            f"recipe {recipe.name}: {recipe.model} trains on {recipe.input_size}px squares but "
            f"is evaluated at {recipe.evaluation.crop}px; its fully connected head fixes one.",
            "make `input_size` and evaluation `crop` equal.",
        )
    if recipe.model in REGION_DETECTORS:
        need(
            recipe.input_size % 32 == 0 and recipe.evaluation.crop % 32 == 0,
            f"recipe {recipe.name}: {recipe.model} needs square inputs that are multiples of its "
            f"output stride 32, not input_size {recipe.input_size} / evaluation crop "
            f"{recipe.evaluation.crop}.",
            "use multiples of 32 (416 is the paper's; 128 gives a 4x4 grid).",
        )
    for name, root in data_roots(config, recipe).items():
        flag = "--data" if name == recipe.dataset else f"data_roots[{name!r}]"
        need(
            root is not None,
            f"recipe {recipe.name} reads {name} ({recipe.train_split} / {recipe.eval_split}), "
            "and no root is given for it.",
            f"pass {flag} (params.yaml data.{name} for the accuracy suite).",
        )
        need(
            config.ray_address is not None or Path(str(root)).expanduser().is_dir(),
            f"data folder {root} for {name} ({flag}) does not exist.",
            f"pass the folder holding {name}.",
        )
    need(
        config.num_classes is None,
        "num_classes is set, but a detector's classes are its dataset's class list.",
        "leave num_classes out.",
    )
    need(
        config.eval_limit is None or config.eval_limit >= 1,
        f"eval_limit {config.eval_limit} is below 1.",
        "pass 1 or more, or leave it out.",
    )
    check_run_settings(config, recipe)


def fit_detector(config: DetectorFitConfig) -> FitResult:
    """Train every seed of ``config`` and evaluate each; records carry "map" (percent)."""
    config = resolve(config)
    roots = {k: str(Path(v).expanduser().resolve()) for k, v in config.data_roots.items()}
    config = dataclasses.replace(config, data_roots=roots)
    validate(config)
    return launch(config, WORKER_FN)


# --- the worker ----------------------------------------------------------------------------


@dataclass
class DetectionPlan(DataPlan):
    classes: list[str]
    eval_set: Any  # the whole evaluation split (annotations for scoring)


def square_loss(encode: Callable, loss: Callable, spec: Any) -> Loss:
    """A YOLO loss on a batch of same-size square images: the stacked images go through the
    model, and its raw output and the targets' boxes and labels (by ``encode``) to ``loss``."""

    def call(module: torch.nn.Module, images: Any, targets: Any) -> torch.Tensor:
        device = next(module.parameters()).device
        x = images if isinstance(images, torch.Tensor) else torch.stack(images)
        output = module(x.to(device, non_blocking=True))
        boxes, labels = [t["boxes"] for t in targets], [t["labels"] for t in targets]
        return loss(output, encode(boxes, labels, spec), spec)

    return call


def grid_loss(spec: yolo_v1.GridSpec) -> Loss:
    """YOLOv1's loss of a grid detector (repro.methods.yolo_v1)."""
    return square_loss(yolo_v1.encode_targets, yolo_v1.yolo_loss, spec)


def detector_loss(model_name: str, model: torch.nn.Module, classes: int, size: int) -> Loss:
    """The training loss of the detector ``model`` (registered as ``model_name``) on a dataset
    of ``classes`` classes, square detectors trained at ``size`` pixels: YOLOv1's (grid),
    YOLOv2's anchor-box loss (region, repro.methods.yolo_v2) or torchvision's."""
    if model_name in GRID_DETECTORS:
        return grid_loss(grid_spec(model, classes, size))
    if model_name in REGION_DETECTORS:
        spec = anchor_spec(model, classes, size)
        return square_loss(yolo_v2.encode_targets, yolo_v2.region_loss, spec)
    return torchvision_loss


def torchvision_loss(module: torch.nn.Module, images: Any, targets: Any) -> torch.Tensor:
    """The sum of a torchvision detector's training losses; labels 1-based (0: background)."""
    device = next(module.parameters()).device
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [
        {"boxes": t["boxes"].to(device), "labels": t["labels"].to(device) + 1} for t in targets
    ]
    return sum(module(images, targets).values())  # type: ignore[return-value]


def protocol(recipe: Recipe, images: int) -> str:
    metric = {"voc07_map": "VOC07 11-point mAP", "voc2010_map": "VOC2010 all-point mAP"}.get(
        recipe.evaluation.metric, "COCO AP"
    )
    return f"{metric} on {recipe.dataset} {recipe.eval_split} ({images} images)"


class Detection(RecipeTask):
    """A detector, evaluated once, after the last epoch (mAP)."""

    def plan(self, config: DetectorFitConfig, rank: int, world: int, device: Any) -> DataPlan:
        """The data of every seed: the config's recipe with its dataset and eval_split
        overrides."""
        recipe = effective_recipe(config)
        square = recipe.model in SQUARE_DETECTORS
        roots = {k: str(v) for k, v in data_roots(config, recipe).items()}
        transform = train_transform(recipe, recipe.input_size if square else None)
        train_set, classes = training_set(recipe, roots, transform)
        eval_set, eval_classes = open_split(
            recipe.dataset, roots[recipe.dataset], recipe.eval_split
        )
        if eval_classes != classes:
            raise DataError(
                f"{recipe.dataset}:{recipe.eval_split} has the classes {eval_classes}, and the "
                f"training split {recipe.train_split} {classes}.",
                "train and evaluate on datasets with the same class list.",
            )
        batch = recipe.batch_size
        sampler = epoch_sampler(config, len(train_set), batch, rank, world, recipe.train_split)
        pin = device.type == "cuda"
        workers = config.loader_workers
        train_loader = loader(
            train_set, batch_size=sampler.per_rank, sampler=sampler, workers=workers, pin=pin
        )
        count = min(config.eval_limit or len(eval_set), len(eval_set))
        eval_loader = loader(
            eval_set,
            batch_size=GRID_EVAL_BATCH if square else 1,
            indices=shard_indices(count, rank, world),
            workers=workers,
        )
        facts = {
            "dataset": recipe.dataset,
            "train_split": recipe.train_split,
            "eval_split": recipe.eval_split,
            "train_images": len(train_set),
            "eval_images": count,
            "global_batch": batch,
            "steps_per_epoch": sampler.steps,
            "classes": len(classes),
        }
        return DetectionPlan(
            recipe=recipe,
            epochs=float(config.epochs or recipe.epochs),
            steps_per_epoch=sampler.steps,
            train_loader=train_loader,
            sampler=sampler,
            eval_loader=eval_loader,
            num_classes=len(classes),
            facts=facts,
            classes=classes,
            eval_set=eval_set,
        )

    def build(
        self,
        config: DetectorFitConfig,
        plan: DetectionPlan,
        index: int,
        rank: int,
        world: int,
        device: Any,
    ) -> SeedRun:
        recipe, seed = plan.recipe, config.seeds[index]
        spec = get_model_spec(recipe.model)
        torch.manual_seed(seed)  # the same initial weights on every rank
        model = build_detector(recipe, plan.num_classes)
        setup = ModelSetup(
            model, spec, tuple(spec.input_size), plan.num_classes, recipe.model_kwargs
        )
        train_config = TrainConfig(
            model=recipe.model,
            model_kwargs=dict(recipe.model_kwargs),
            batch_size=recipe.batch_size,
            precision=config.precision,
            parallel="ddp" if world > 1 else "none",
            workers=world,
            use_gpu=config.use_gpu,
            seed=seed,
        )
        loss_fn = detector_loss(recipe.model, model, plan.num_classes, recipe.input_size)
        pm = parallelize(
            setup, train_config, rank=rank, world=world, device=device, loss_fn=loss_fn
        )
        params = [p for p in pm.module.parameters() if p.requires_grad]
        return seed_run(config, plan, index, pm, params)

    def evaluate(self, run: SeedRun, plan: DetectionPlan) -> dict[str, float]:
        """The recipe's metric over every rank's shard of the evaluation split (and the number of
        detections scored), the same on all ranks: each rank detects its images, rank 0 gathers
        and scores them."""
        rows, ids = detect_rows(
            run.pm.base,
            plan.eval_loader,
            num_classes=plan.num_classes,
            input_size=plan.recipe.evaluation.crop,
        )
        parts = run.pm.gather((rows, ids))
        metrics: list[Any] = [None]
        if run.pm.rank == 0:
            all_rows = [row for part_rows, _ in parts for row in part_rows]
            all_ids = [i for _, part_ids in parts for i in part_ids]
            scores = score_rows(plan.recipe, plan.eval_set, plan.classes, all_rows, all_ids)
            metrics = [{**scores, "detections": len(all_rows)}]
        if len(parts) > 1:  # distributed
            dist.broadcast_object_list(metrics, src=0)
        return metrics[0]

    def record(
        self, run: SeedRun, plan: DetectionPlan, weights: str | None, diverged: bool, metrics: dict
    ) -> dict[str, Any]:
        last = run.history[-1] if run.history else {}
        return {
            "seed": run.seed,
            **metrics,
            "epochs": last.get("epoch", 0),
            "history": run.history,
            "weights": weights,
            "diverged": diverged,
            "protocol": protocol(plan.recipe, plan.facts["eval_images"]),
            "note": deviations(plan.recipe.model),
        }


def detector_fit_worker(payload: dict[str, Any], session: WorkerSession) -> dict[str, Any] | None:
    """Train and evaluate every seed of ``payload`` (a DetectorFitConfig as a dict) as this
    session's rank; rank 0 returns the seeds' records, environment and final weights."""
    return run_worker(DetectorFitConfig(**payload), session, Detection())
