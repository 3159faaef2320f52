"""The accuracy suite: how the claims it can measure are grouped, trained or loaded, and judged.

Accuracy claims are grouped by recipe (the paper's training and test protocol). A group either
evaluates weights the user supplies (params.yaml `weights:`, `--weights MODEL=PATH`), or trains by
the recipe through Ray Train (data-parallel, checkpointed, resumable; one run per seed) and then
evaluates: classifiers through repro.train.fit, the YOLO and Faster R-CNN detectors through
repro.train.detector_fit (on every dataset their train_split names, e.g. VOC 2007+2012),
R-CNN's recipes through repro.train.rcnn. Transfer claims (DeCAF on SUN-397) fit a linear
classifier on the frozen features of supplied ImageNet weights, one run per SUN-397 partition
(repro.methods.transfer). Ablation claims (`baseline:`, e.g. AlexNet's overlapping pooling)
train both variants by the recipe, seed by seed, and judge the paired differences; a variant
already trained in the same call is reused. With several seeds the verdict compares the claim's
tolerance band with a 95% confidence interval of the mean. Which claims can run, and why the
others cannot, is repro.suites.accuracy.reasons; the dataset claims are repro.suites.dataset.
Nothing is estimated.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch.utils.data

from repro.claims import COMPARISON_METRICS, Claim, Paper
from repro.config import AccuracySettings
from repro.data.augment import center_crop_transform
from repro.data.detection_loaders import DETECTION_DATASETS, recipe_datasets
from repro.data.roots import data_root
from repro.data.training_sets import load_dataset
from repro.errors import ReproError
from repro.evaluation.classification import eval_transform, evaluate_classifier
from repro.evaluation.stats import judge_interval, mean_ci
from repro.evaluation.weights import load_weights
from repro.methods.detection import evaluate_detector
from repro.methods.rcnn.system import classifier_of
from repro.methods.rpn_proposals import PROPOSALS_METRIC, measure_proposals
from repro.methods.transfer import TRANSFER_DATASETS, TRANSFER_METRIC, measure_transfer, metric_key
from repro.models import build_model, get_model_spec
from repro.recipes import Recipe
from repro.suites.accuracy.reasons import DETECTION_METRICS, is_rcnn, variant_recipe
from repro.suites.accuracy.run_key import key_hash, run_key
from repro.train.detector_fit import DetectorFitConfig, deviations, fit_detector
from repro.train.fit import FitConfig, fit
from repro.train.rcnn import measure_rcnn
from repro.train.recipe_loop import epoch_point
from repro.verdicts import GroupOutcome, result_for

PERCENT = 100.0
# images of one size: the training's evaluation and the protocol treat every image alike
FIXED_SIZE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
SAME_INPUT_CHECKS = 16  # images of the split whose inputs must agree...
SAME = 1e-5  # ...to float rounding (the two transforms order the same arithmetic differently)


class Runs(NamedTuple):
    """A recipe's runs: each run's metrics (percent), how they were obtained, and the training
    curve (one row per seed and epoch; empty where nothing trained here)."""

    metrics: list[dict[str, float]]
    note: str
    curve: tuple[dict[str, Any], ...] = ()


RunCache = dict[str, Runs]


@dataclass(frozen=True)
class AccuracyGroup:
    """Claims measured by one recipe on one dataset: one training (per seed) or one evaluation."""

    paper: str
    recipe: Recipe
    claims: tuple[Claim, ...]
    data_root: str
    settings: AccuracySettings
    # one per paper: a variant that an ablation and a plain claim both train is trained once
    cache: RunCache = field(default_factory=dict, compare=False, repr=False)
    weights: str | None = None
    roots: dict[str, str] = field(default_factory=dict)  # every dataset the recipe reads
    overrides: str = ""  # where the settings changed the recipe's training (results say so)
    baseline: Recipe | None = None  # an ablation's other variant (``recipe`` trains the model)
    tracking_uri: str | None = None  # the training runs log here (None: nowhere) ...
    mlflow_parent: str | None = None  # ... as children of the paper's run, when opened

    @property
    def papers(self) -> tuple[str, ...]:
        return (self.paper,)

    @property
    def other_roots(self) -> dict[str, str]:
        """The roots of the datasets besides the recipe's own (a union train_split's)."""
        return {k: v for k, v in self.roots.items() if k != self.recipe.dataset}

    @property
    def key(self) -> str:
        versus = f" vs {self.baseline.name}" if self.baseline is not None else ""
        return f"{self.recipe.name}{versus}@{self.recipe.dataset}"


def recipe_datasets_of(recipe: Recipe) -> list[str]:
    """The datasets a recipe reads: its own, and for a detector every train_split part's."""
    if recipe.dataset not in DETECTION_DATASETS:
        return [recipe.dataset]
    return recipe_datasets(recipe)


def accuracy_roots(
    paper: Paper, claims: Sequence[Claim], data_roots: Mapping[str, str] | None
) -> dict[str, str]:
    """The resolved root of every dataset the claims' recipes read (present: the plan said)."""
    names = {c.dataset for c in claims if c.dataset is not None}
    for claim in claims:
        recipe = paper.recipe_for(claim)
        if recipe is not None:
            names.update(recipe_datasets_of(recipe))
    found = {name: data_root(name, data_roots) for name in sorted(names)}
    return {name: str(root) for name, root in found.items() if root}


def group_accuracy_claims(
    paper: Paper,
    claims: Sequence[Claim],
    settings: AccuracySettings,
    roots: Mapping[str, str],
    tracking_uri: str | None = None,
    mlflow_parent: str | None = None,
) -> list[AccuracyGroup]:
    """One group per recipe and dataset; the groups share one run cache. Their training runs
    log to ``tracking_uri`` (None: not at all), children of run ``mlflow_parent``."""
    cache: RunCache = {}
    groups: dict[str, AccuracyGroup] = {}
    for claim in claims:
        recipe = paper.recipe_for(claim)
        assert recipe is not None  # not_run_reason said so
        baseline = None
        weights = settings.weights.get(recipe.model)
        if claim.baseline is not None and claim.model is not None:
            baseline = variant_recipe(recipe, claim.baseline)
            recipe = variant_recipe(recipe, claim.model)
            weights = None  # an ablation trains both variants
        mine = {d: roots[d] for d in recipe_datasets_of(recipe) if d in roots}
        overrides, batch = "", settings.batch_size
        if weights is None and batch is not None and batch != recipe.batch_size:
            overrides = (
                f"; global batch {batch} instead of the recipe's {recipe.batch_size} "
                "(accuracy.batch_size)"
            )
            recipe = recipe.model_copy(update={"batch_size": batch})
            if baseline is not None:
                baseline = baseline.model_copy(update={"batch_size": batch})
        group = AccuracyGroup(
            paper.paper, recipe, (claim,), roots[recipe.dataset], settings, cache, weights, mine,
            overrides, baseline, tracking_uri, mlflow_parent,
        )  # fmt: skip
        if group.key in groups:
            group = replace(groups[group.key], claims=(*groups[group.key].claims, claim))
        groups[group.key] = group
    return list(groups.values())


def claim_value(claim: Claim, metrics: Mapping[str, float]) -> float:
    """The claim's metric from an evaluation's metrics (all in percent, as the papers give
    them)."""
    if claim.metric == "top5_accuracy":
        return PERCENT - metrics["top5_error"]
    if claim.metric in COMPARISON_METRICS:
        base, sign = COMPARISON_METRICS[claim.metric]
        return sign * (metrics[f"model.{base}"] - metrics[f"baseline.{base}"])
    if claim.metric == TRANSFER_METRIC and isinstance(claim.layer, str):
        return metrics[metric_key(claim.layer)]
    return metrics[claim.metric]


def judge_runs(claim: Claim, values: Sequence[float]) -> tuple[str, str, float]:
    """Verdict, note and mean of one claim over seeds: with two or more runs the 95% confidence
    interval of the mean must overlap the claim's tolerance band."""
    mean, low, high = mean_ci(list(values))
    tol, claimed = claim.tolerance, float(claim.value)  # type: ignore[arg-type]
    verdict = judge_interval(claimed, mean, low, high, tol_abs=tol.abs, tol_rel=tol.rel)
    spread = f"mean of {len(values)} runs, 95% CI [{low:.3g}, {high:.3g}]"
    if len(values) == 1:
        spread = "one run (no interval; params.yaml accuracy.seeds > 1 gives one)"
    note = f"{spread}; values {', '.join(f'{v:.4g}' for v in values)}"
    return verdict, note, mean


def measure_accuracy_group(group: AccuracyGroup) -> GroupOutcome:
    """Train (or load) and evaluate; one result per claim. The group's cache keeps each
    recipe's runs, so the variant an ablation shares with a plain claim trains once."""
    start = time.perf_counter()
    try:
        runs, details, curve = (_cached_runs if group.baseline is None else _comparison_runs)(group)
    except ReproError as exc:
        return failed_outcome(group, exc.paragraph())
    results = []
    for claim in group.claims:
        values = [claim_value(claim, m) for m in runs]
        verdict, note, mean = judge_runs(claim, values)
        note = f"{note}; {details}{group.overrides}"
        if verdict == "deviates" and claim.note:
            note = f"{note}. {claim.note}"
        results.append(result_for(claim, group.paper, round(mean, 4), verdict, note))
    elapsed = round(time.perf_counter() - start, 3)
    for r in results:
        r.seconds = round(elapsed / max(len(results), 1), 4)
    summary = {f"run{i}.{k}": float(v) for i, m in enumerate(runs) for k, v in m.items()}
    return GroupOutcome(
        group.key,
        group.recipe.model,
        dict(group.recipe.model_kwargs),
        [],
        {**summary, "measure_seconds": elapsed},
        results,
        elapsed,
        paper=group.paper,
        curve=list(curve),
    )


def failed_outcome(group: AccuracyGroup, note: str) -> GroupOutcome:
    """The group's claims as `error` rows saying ``note``."""
    rows = [result_for(c, group.paper, None, "error", note) for c in group.claims]
    return GroupOutcome(group.key, group.recipe.model, {}, [], {}, rows, paper=group.paper)


def _cached_runs(group: AccuracyGroup) -> Runs:
    key = f"{group.recipe.model_dump_json()}|{group.weights}"
    if group.recipe.dataset in TRANSFER_DATASETS:  # the claims name the layers measured
        key += "|" + ",".join(c.id for c in group.claims)
    if _counts_proposals(group):
        key += "|proposals"
    if key not in group.cache:
        group.cache[key] = Runs(*_runs(group, group.settings))
    return group.cache[key]


def _comparison_runs(group: AccuracyGroup) -> Runs:
    """Both variants' runs, paired seed by seed: ``model.<metric>`` and ``baseline.<metric>``."""
    assert group.baseline is not None
    model = replace(group, claims=(), weights=None, overrides="", baseline=None)
    model_runs, model_note, model_curve = _cached_runs(model)
    base_runs, base_note, base_curve = _cached_runs(replace(model, recipe=group.baseline))
    runs = [
        {**{f"model.{k}": v for k, v in m.items()}, **{f"baseline.{k}": v for k, v in b.items()}}
        for m, b in zip(model_runs, base_runs, strict=True)
    ]
    note = (
        f"paired by seed: {_variant_text(group.recipe)} {model_note}; baseline "
        f"{_variant_text(group.baseline)} {base_note}"
    )
    return Runs(runs, note, model_curve + base_curve)


def _variant_text(recipe: Recipe) -> str:
    kwargs = ", ".join(f"{k}={v}" for k, v in sorted(recipe.model_kwargs.items()))
    return f"{recipe.model}({kwargs})"


def _runs(group: AccuracyGroup, settings: AccuracySettings) -> tuple[Any, ...]:
    """Per-run metrics (percent), a note on how they were obtained and the training curve."""
    recipe = group.recipe
    limit = f", first {settings.eval_limit} images" if settings.eval_limit else ""
    if recipe.dataset in TRANSFER_DATASETS:
        assert group.weights is not None  # transfer_reason said so
        return measure_transfer(recipe, group.claims, group.data_root, group.weights, settings)
    if is_rcnn(recipe):
        assert group.weights is not None  # rcnn_reason said so
        classifier = classifier_of(recipe)
        return measure_rcnn(recipe, group.data_root, group.weights, settings, classifier)
    if group.weights is not None:
        runs = [evaluate_weights(recipe, group.data_root, group.weights, settings)]
        _add_proposals(group, settings, runs, [group.weights])
        return runs, f"weights {Path(group.weights).name}, {protocol_text(recipe)}{limit}"
    if recipe.dataset in DETECTION_DATASETS:
        return _train_detector(group, settings, limit)
    result = fit(FitConfig(**_fit_options(group, settings)))
    runs = []
    scored = loop_scored(recipe, group.data_root, settings)
    for seed_run in result.seeds:
        weights = seed_run.get("weights")
        if weights and not scored:  # the recipe's test protocol on the trained weights
            runs.append(evaluate_weights(recipe, group.data_root, weights, settings))
        else:  # the training's last evaluation is that protocol's: the split is scored once
            runs.append(
                {"top1_error": seed_run["top1_error"], "top5_error": seed_run["top5_error"]}
            )
    note = f"{_trained_text(recipe, settings)}, {protocol_text(recipe)}{limit}"
    return runs, note, training_curve(recipe, result.seeds)


def training_curve(recipe: Recipe, seeds: Sequence[Mapping[str, Any]]) -> tuple[dict, ...]:
    """Every seed's epochs as rows (the recipe, seed, epoch, then the epoch's metrics)."""
    rows = []
    for record in seeds:
        for entry in record.get("history") or []:
            point = epoch_point(entry)
            rows.append({"recipe": recipe.name, "seed": record.get("seed"), **point})
    return tuple(rows)


def _trained_text(recipe: Recipe, settings: AccuracySettings, on: str = "") -> str:
    epochs = settings.epochs or recipe.epochs
    return (
        f"trained by recipe {recipe.name} ({epochs:g} epochs{on}, {settings.workers} worker(s), "
        f"seeds {list(range(settings.seeds))})"
    )


def loop_scored(recipe: Recipe, root: str, settings: AccuracySettings) -> bool:
    """Whether the training's evaluation after its last epoch is the recipe's test protocol,
    so the trained weights need no second pass over the split: one centre crop, the whole
    split (no eval_limit), on a dataset of equally sized images where the training's
    evaluation transform and the protocol's give the same input tensors, to float rounding
    (compared on the split's first images)."""
    e = recipe.evaluation
    if e.crops != 1 or settings.eval_limit or recipe.dataset not in FIXED_SIZE_DATASETS:
        return False
    channels = get_model_spec(recipe.model).input_size[0]
    training = center_crop_transform(e, channels)
    protocol = eval_transform(e.resize, e.crop, 1, channels=channels, normalize=False)
    split = recipe.eval_split
    ours, _ = load_dataset(recipe.dataset, root, split, training)
    theirs, _ = load_dataset(recipe.dataset, root, split, protocol)
    for i in range(min(SAME_INPUT_CHECKS, len(ours))):
        (a, y), (b, z) = ours[i], theirs[i]
        if int(y) != int(z) or a.shape != b.shape or not torch.allclose(a, b, rtol=0, atol=SAME):
            return False
    return len(ours) == len(theirs)


def _fit_options(group: AccuracyGroup, settings: AccuracySettings) -> dict[str, Any]:
    """What a training run of ``group`` takes from the suite's settings (FitConfig fields). The
    run's folder is named by a hash of everything that changes its result (run_key), so a run
    with other settings, data or code trains anew and the same run resumes."""
    recipe, seeds = group.recipe.model_dump(), list(range(settings.seeds))
    key = run_key(
        recipe,
        workers=settings.workers,
        seeds=seeds,
        epochs=settings.epochs,
        eval_limit=settings.eval_limit,
        precision=FitConfig.precision,
        use_gpu=settings.use_gpu,
        roots={group.recipe.dataset: group.data_root, **group.other_roots},
    )
    return {
        "recipe": recipe,
        "data_root": group.data_root,
        "workers": settings.workers,
        "use_gpu": settings.use_gpu,
        "seeds": seeds,
        "epochs": settings.epochs,
        "run_name": f"{group.paper}-{group.recipe.name}-{key_hash(key)}",
        "storage_path": str(Path(settings.storage).expanduser()),
        # per seed an MLflow run in the paper's experiment: curves, inputs, system metrics and
        # the trained network
        "tracking_uri": group.tracking_uri,
        "mlflow_experiment": group.paper,
        "mlflow_parent": group.mlflow_parent,
        "log_model": group.tracking_uri is not None,
    }


def _train_detector(
    group: AccuracyGroup, settings: AccuracySettings, limit: str
) -> tuple[list[dict[str, float]], str]:
    """Train the group's detector by its recipe, one run per seed, each evaluated by the
    recipe's protocol inside the run (the detections of every rank scored once)."""
    recipe = group.recipe
    result = fit_detector(
        DetectorFitConfig(
            **_fit_options(group, settings),
            data_roots=group.other_roots,
            eval_limit=settings.eval_limit,
        )
    )
    runs = [
        {k: float(r[k]) for k in DETECTION_METRICS if r.get(k) is not None} for r in result.seeds
    ]
    _add_proposals(group, settings, runs, [r.get("weights") for r in result.seeds])
    diverged = [r["seed"] for r in result.seeds if r.get("diverged")]
    trained = _trained_text(recipe, settings, f" on {recipe.train_split}")
    note = f"{trained}, {protocol_text(recipe)}{limit}; {deviations(recipe.model)}"
    if diverged:
        note += f"; seed(s) {diverged} diverged (the training loss was not finite)"
    return runs, note, training_curve(recipe, result.seeds)


def _counts_proposals(group: AccuracyGroup) -> bool:
    return any(c.metric == PROPOSALS_METRIC for c in group.claims)


def _add_proposals(
    group: AccuracyGroup,
    settings: AccuracySettings,
    runs: list[dict[str, float]],
    weights: Sequence[str | None],
) -> None:
    """Each run's mean RPN proposal count, from its weights, when a claim of the group asks."""
    if not _counts_proposals(group):
        return
    device = "cuda" if settings.use_gpu else "cpu"
    for run, path in zip(runs, weights, strict=True):
        if path is None:
            raise ReproError(
                f"a training run of {group.recipe.name} saved no weights, so its proposals "
                "cannot be counted.",
                "rerun the training (its checkpoint resumes it) or supply weights.",
            )
        run.update(
            measure_proposals(
                group.recipe, group.data_root, path, limit=settings.eval_limit, device=device
            )
        )


def protocol_text(recipe: Recipe) -> str:
    e = recipe.evaluation
    if recipe.dataset in DETECTION_DATASETS:
        return f"{recipe.eval_split} split, {e.metric}"
    return f"{recipe.eval_split} split, resize {e.resize}, {e.crops} crop(s) of {e.crop}"


def evaluate_weights(
    recipe: Recipe, root: str, weights: str, settings: AccuracySettings
) -> dict[str, float]:
    device = "cuda" if settings.use_gpu else "cpu"
    if recipe.dataset in DETECTION_DATASETS:
        return evaluate_detector(recipe, root, weights, limit=settings.eval_limit, device=device)
    e = recipe.evaluation
    # the network's channels (grey sets are repeated to three for an RGB network, as in training)
    channels = get_model_spec(recipe.model).input_size[0]
    # load_dataset normalizes with the dataset's own statistics (LeNet's for digits)
    transform = eval_transform(e.resize, e.crop, e.crops, channels=channels, normalize=False)
    dataset, classes = load_dataset(recipe.dataset, root, recipe.eval_split, transform)
    if settings.eval_limit:
        dataset = torch.utils.data.Subset(dataset, range(min(settings.eval_limit, len(dataset))))
    model = build_model(recipe.model, **{**recipe.model_kwargs, "num_classes": len(classes)})
    load_weights(model, weights)
    out = evaluate_classifier(model, dataset, crops=e.crops, device=device)
    return {"top1_error": float(out["top1_error"]), "top5_error": float(out["top5_error"])}
