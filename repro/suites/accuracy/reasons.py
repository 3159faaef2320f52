"""Which accuracy claims the accuracy suite can measure, and in words why not the others: a
metric it does not measure, another method's entry, an ensemble, no recipe, a detector without a
training loss, a training dataset missing, ImageNet weights a protocol starts from and nobody
supplied, an ablation whose pair cannot be built. The dataset's own presence is checked before,
by the runner's planner ("dataset not present")."""

from __future__ import annotations

from collections.abc import Mapping

from repro.claims import COMPARISON_METRICS, Claim, ModelRef, Paper, kebab_case
from repro.config import AccuracySettings
from repro.data.detection_loaders import DETECTION_DATASETS, recipe_datasets
from repro.data.roots import data_root, dataset_present
from repro.errors import ReproError
from repro.methods import transfer
from repro.methods.rcnn.regions import require_selective_search
from repro.methods.rcnn.system import classifier_of
from repro.methods.rpn_proposals import PROPOSALS_METRIC
from repro.models import get_model_spec
from repro.recipes import Recipe
from repro.train.detector_fit import training_gap

CLASSIFICATION_METRICS = {
    "top1_error": "top-1 error, % of images",
    "top5_error": "top-5 error, % of images",
    "top5_accuracy": "top-5 accuracy, % of images (100 - top-5 error)",
}
DETECTION_METRICS = {
    "map": "VOC: mean AP at IoU 0.5 (VOC07 11-point or VOC2010 all-point per the recipe); "
    "COCO: AP at IoU .50:.95",
    "map50": "COCO AP at IoU 0.5",
    "proposals_per_image": "RPN proposals per image left by NMS at IoU 0.7 with no top-N cut "
    "(Faster R-CNN models, on the evaluation split)",
}
RPN_DETECTORS = ("faster_rcnn_vgg16", "faster_rcnn_zf")  # torchvision's RPN: proposals counted
TRAINABLE_DATASETS = ("imagenet", "cifar10", "mnist", "fashion_mnist", "digits", "imagefolder")


def not_run_reason(
    paper: Paper,
    claim: Claim,
    settings: AccuracySettings,
    data_roots: Mapping[str, str] | None = None,
) -> str | None:
    """Why the accuracy suite cannot measure ``claim`` (its dataset is present), or None.
    ``data_roots`` (params.yaml `data:`) locates the other datasets a recipe trains on."""
    transferred = claim.metric == transfer.TRANSFER_METRIC
    transferred = transferred and claim.dataset in transfer.TRANSFER_DATASETS
    comparison = claim.metric in COMPARISON_METRICS
    if comparison and claim.baseline is None:
        return (
            f"an ablation ({claim.metric}) with no `baseline:` variant: the harness cannot "
            "build and train the pair of networks it compares (see the claim's note)"
        )
    measurable = (*CLASSIFICATION_METRICS, *DETECTION_METRICS)
    if not (transferred or comparison) and claim.metric not in measurable:
        measured = ", ".join([*CLASSIFICATION_METRICS, *DETECTION_METRICS])
        sets = ", ".join(transfer.TRANSFER_DATASETS)
        return (
            f"the accuracy suite measures {measured} of single models and transfer accuracy "
            f"on {sets}; {claim.metric!r} (a comparison of variants or "
            "a proposal statistic) is not measured"
        )
    if claim.model is None:
        return "no registered model: the entry is another method's result, kept for context"
    if claim.ensemble > 1:
        return (
            f"an ensemble of {claim.ensemble} models; the harness measures single models (this "
            "paper's single-model claims are measured)"
        )
    recipe = paper.recipe_for(claim)
    if recipe is None:
        return (
            f"no recipe in {paper.path} for {claim.model.name} on {claim.dataset}; add one "
            "under `recipes:` (repro/papers/README.md, Recipes)"
        )
    if transferred:
        return transfer_reason(claim, recipe, settings)
    if comparison and recipe.dataset in DETECTION_DATASETS:
        return comparison_reason(claim, recipe, data_roots)
    if claim.metric == PROPOSALS_METRIC and recipe.model not in RPN_DETECTORS:
        return (
            f"{recipe.model} has no region proposal network whose proposals could be counted "
            f"(the harness counts those of {', '.join(RPN_DETECTORS)})"
        )
    if claim.metric in DETECTION_METRICS and is_rcnn(recipe):
        return rcnn_reason(recipe, settings)
    if claim.metric in DETECTION_METRICS and recipe.model not in settings.weights:
        return detector_training_reason(recipe, data_roots)
    classifies = comparison or claim.metric in CLASSIFICATION_METRICS
    if classifies and recipe.dataset not in TRAINABLE_DATASETS:
        return f"classification on {recipe.dataset} is not supported by the accuracy suite"
    if claim.metric in CLASSIFICATION_METRICS and recipe.model not in settings.weights:
        return recipe.cost_reason(settings.use_gpu, settings.epochs)
    return None


def detector_training_reason(
    recipe: Recipe, data_roots: Mapping[str, str] | None = None, weights_hint: bool = True
) -> str | None:
    """Why a detection recipe cannot train here (no loss for its model, a training dataset
    missing), or None."""
    weights = (
        f"supply weights to evaluate them: `weights: {{{recipe.model}: PATH}}` in params.yaml "
        f"or --weights {recipe.model}=PATH"
        if weights_hint
        else "an ablation trains both of its variants"
    )
    gap = training_gap(recipe.model)
    if gap is not None:
        return f"training {recipe.model} by recipe {recipe.name} is not possible: {gap}; {weights}"
    if recipe.dataset not in DETECTION_DATASETS:
        return f"training detectors on {recipe.dataset} is not supported by the accuracy suite"
    for name in recipe_datasets(recipe):
        root = data_root(name, data_roots)
        if not dataset_present(name, root):
            where = f" at {root}" if root else ""
            return (
                f"training {recipe.model} by recipe {recipe.name} needs {name}: dataset not "
                f"present: {name}{where} (recipe {recipe.name} trains on {recipe.train_split}; "
                f"set data.{name} in params.yaml or REPRO_DATA_{name.upper()} to its root, or "
                f"{weights})"
            )
    return None


def is_rcnn(recipe: Recipe) -> bool:
    """A detection recipe on a classification network: R-CNN's pipeline (selective-search
    windows through a fine-tuned classifier, repro.methods.rcnn.system)."""
    return recipe.dataset in DETECTION_DATASETS and get_model_spec(recipe.model).task == (
        "classification"
    )


def rcnn_reason(recipe: Recipe, settings: AccuracySettings) -> str | None:
    """Why R-CNN's pipeline cannot run for ``recipe``: no window classifier named, no selective
    search, or no ImageNet weights to fine-tune from."""
    try:
        classifier_of(recipe)
        require_selective_search()
    except ReproError as exc:
        return exc.cause
    if not recipe.dataset.startswith("voc"):
        return f"R-CNN's pipeline reads VOC sets; {recipe.dataset} is not supported"
    if recipe.model not in settings.weights:
        return imagenet_weights_reason("R-CNN fine-tunes", recipe.model)
    return None


def imagenet_weights_reason(protocol: str, model: str) -> str:
    """A protocol that starts from ImageNet weights of ``model`` nobody supplied."""
    return (
        f"{protocol} ImageNet-trained {model} weights: supply them with `weights: {{{model}: "
        f"PATH}}` in params.yaml or --weights {model}=PATH (the suite does not chain an "
        "ImageNet training into this protocol)"
    )


def variant_recipe(recipe: Recipe, ref: ModelRef) -> Recipe:
    """``recipe`` training the variant ``ref`` (its kwargs over the recipe's model_kwargs);
    the recipe itself when ``ref`` is its model."""
    kwargs = {**recipe.model_kwargs, **ref.kwargs}
    if ref.name == recipe.model and kwargs == recipe.model_kwargs:
        return recipe
    changed = ",".join(f"{k}={v}" for k, v in sorted(ref.kwargs.items()))
    name = kebab_case(f"{recipe.name} {ref.name if ref.name != recipe.model else ''} {changed}")
    update = {"name": name, "model": ref.name, "model_kwargs": kwargs}
    if "dropout" in ref.kwargs:  # the recipe's dropout would override the variant's
        update["dropout"] = ref.kwargs["dropout"]
    return recipe.model_copy(update=update)


def comparison_reason(
    claim: Claim, recipe: Recipe, data_roots: Mapping[str, str] | None = None
) -> str | None:
    """Why an ablation claim on detectors cannot train both of its variants by ``recipe``, or
    None."""
    assert claim.model is not None and claim.baseline is not None  # the schema says so
    for ref in (claim.model, claim.baseline):
        reason = detector_training_reason(
            variant_recipe(recipe, ref), data_roots, weights_hint=False
        )
        if reason is not None:
            return reason
    return None


def transfer_reason(claim: Claim, recipe: Recipe, settings: AccuracySettings) -> str | None:
    """Why a transfer claim cannot run: no layer named, or no ImageNet weights for the network
    (the suite does not chain an ImageNet training into the transfer)."""
    if not isinstance(claim.layer, str):
        return "a transfer claim names one `layer` whose frozen activations are the features"
    try:
        transfer.classifier_of(recipe)
    except ReproError as exc:
        return exc.cause
    if recipe.model not in settings.weights:
        return imagenet_weights_reason("the transfer protocol needs", recipe.model)
    return None
