"""The papers' training recipes: every accuracy claim the harness can measure resolves to a recipe
for its own model and dataset, every recipe builds its model and agrees with it, and broken
recipes fail with errors that name the file and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from repro.claims import list_papers, load_paper, load_paper_file
from repro.errors import ClaimFileError
from repro.models import get_model_spec
from repro.recipes import AUGMENTATIONS, Recipe

from .conftest import SEEDS

PAPERS = list_papers()
DETECTION_METRICS = {"voc07_map", "voc2010_map", "coco"}
METRICS_BY_DATASET = {
    "voc2007": {"voc07_map"},
    "voc2010": {"voc2010_map"},
    "voc2012": {"voc2010_map"},  # VOC 2010 onwards: all-point AP
    "coco": {"coco"},
}
CLASSIFICATION_EVAL = {"top1_error", "top5_error", "top1_top5"}


def _recipes() -> list[tuple[str, Recipe]]:
    return [(p.paper, r) for p in map(load_paper, list_papers()) for r in p.recipes]


RECIPES = _recipes()
RECIPE_IDS = [f"{paper}:{r.name}" for paper, r in RECIPES]


def test_there_are_recipes() -> None:
    assert len(RECIPES) >= 20
    assert {r.model for _, r in RECIPES} >= {"alexnet", "vgg_d", "googlenet", "resnet50", "yolov1"}


@pytest.mark.parametrize("key", PAPERS)
def test_single_model_accuracy_claims_resolve_to_their_recipe(key: str) -> None:
    paper = load_paper(key)
    for claim in paper.claims:
        if claim.kind != "accuracy" or claim.model is None or claim.ensemble > 1:
            continue
        recipe = paper.recipe_for(claim)
        assert recipe is not None, f"{key}/{claim.id}: no recipe for {claim.model.name}"
        assert recipe.model == claim.model.name, f"{key}/{claim.id}: recipe {recipe.name}"
        assert recipe.dataset == claim.dataset, f"{key}/{claim.id}: recipe {recipe.name}"


@pytest.mark.parametrize("key", PAPERS)
def test_ensemble_protocols_are_marked(key: str) -> None:
    """A claim whose protocol says it is an ensemble is not a single model's number."""
    for claim in load_paper(key).claims:
        if claim.kind == "accuracy" and claim.model and "ensemble" in (claim.protocol or ""):
            assert claim.ensemble > 1, f"{key}/{claim.id}: protocol says ensemble"


@pytest.mark.parametrize("key", PAPERS)
def test_named_recipes_fit_the_claim(key: str) -> None:
    paper = load_paper(key)
    for claim in paper.claims:
        if claim.recipe is not None:
            recipe = paper.recipe_for(claim)
            assert recipe is not None and recipe.name == claim.recipe
            assert claim.model is not None and recipe.model == claim.model.name
            assert recipe.dataset == claim.dataset


def test_recipe_models_are_registered_and_build() -> None:
    built: set[str] = set()
    for paper, recipe in RECIPES:
        spec = get_model_spec(recipe.model)  # raises for an unregistered model
        key = f"{recipe.model}{sorted(recipe.model_kwargs.items())}"
        if key in built:
            continue
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = spec.build(**recipe.model_kwargs)
        assert sum(p.numel() for p in model.parameters()) > 0, f"{paper}:{recipe.name}"
        built.add(key)


@pytest.mark.parametrize(("paper", "recipe"), RECIPES, ids=RECIPE_IDS)
def test_recipe_sizes_match_the_model(paper: str, recipe: Recipe) -> None:
    spec = get_model_spec(recipe.model)
    ev = recipe.evaluation
    if spec.task == "classification":
        side = spec.input_size[-1]
        assert recipe.input_size == side, f"train crop {recipe.input_size}, model takes {side}"
        assert ev.crop == side, f"test crop {ev.crop}, model takes {side}"
        # a single centre crop beyond the image pads it (e.g. 28x28 in LeNet-5's 32x32 field);
        # TenCrop's corners cannot pad
        assert ev.crop <= ev.resize or ev.crops == 1
        if recipe.resize is not None:
            assert recipe.input_size <= recipe.resize or ev.crops == 1
    else:
        assert recipe.input_size == spec.input_size[1], f"model's paper size {spec.input_size}"
        assert ev.crops == 1, "detectors are tested on the whole image"
    if recipe.scale_range is not None:
        low, high = recipe.scale_range
        assert recipe.input_size <= low < high


@pytest.mark.parametrize(("paper", "recipe"), RECIPES, ids=RECIPE_IDS)
def test_recipe_metric_fits_the_dataset(paper: str, recipe: Recipe) -> None:
    expected = METRICS_BY_DATASET.get(recipe.dataset, CLASSIFICATION_EVAL)
    assert recipe.evaluation.metric in expected
    if get_model_spec(recipe.model).task == "detection":
        # a classifier may serve a detection pipeline (R-CNN), a detector never a classification
        assert recipe.evaluation.metric in DETECTION_METRICS


@pytest.mark.parametrize(("paper", "recipe"), RECIPES, ids=RECIPE_IDS)
def test_recipe_schedule_fits_the_training(paper: str, recipe: Recipe) -> None:
    s = recipe.schedule
    assert s.milestones == sorted(set(s.milestones)), "milestones increase"
    assert all(0 < m < recipe.epochs for m in s.milestones), "milestones within the training"
    assert s.warmup_epochs < recipe.epochs
    if s.step_epochs is not None:
        assert s.step_epochs < recipe.epochs
    if s.name in ("plateau", "step", "multistep", "exponential"):
        assert s.factor < 1, "the rate decreases"


@pytest.mark.parametrize(("paper", "recipe"), RECIPES, ids=RECIPE_IDS)
def test_recipe_sources_name_real_seeds(paper: str, recipe: Recipe) -> None:
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds not present")
    if not recipe.source.document:  # else a published source outside the seeds
        assert (SEEDS / recipe.source.seed).is_file(), recipe.source.seed
    assert recipe.note, "every recipe says where its numbers come from"


# --- broken files ------------------------------------------------------------------------------

HEAD = "paper: bad\ntitle: t\nauthors: a\nyear: 2000\n"
CLAIM = (
    "  - {{id: c, table: T, row: r, metric: top1_error, unit: '%', value: 30, kind: accuracy,\n"
    "     tolerance: {{abs: 0.5}}, source: {{seed: s, section: s}}, model: lenet5,\n"
    "     dataset: mnist{extra}}}\n"
)
RECIPE = """\
  - name: lenet-mnist
    model: lenet5
    dataset: mnist
    source: {seed: s, section: s}
    optimizer: {name: sgd, lr: 0.01, momentum: 0.9}
    schedule: {name: multistep, milestones: [10]}
    batch_size: 64
    epochs: 20
    input_size: 32
    augmentation: [random_crop]
    evaluation: {resize: 32, crop: 32, metric: top1_error}
"""


def _write(tmp_path: Path, claim_extra: str = "", recipe: str = RECIPE) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "claims:\n" + CLAIM.format(extra=claim_extra) + "recipes:\n" + recipe)
    return path


def _error(path: Path) -> str:
    with pytest.raises(ClaimFileError) as err:
        load_paper_file(path)
    text = err.value.paragraph()
    assert str(path) in text
    return text


def test_good_recipe_file_loads(tmp_path: Path) -> None:
    paper = load_paper_file(_write(tmp_path))
    recipe = paper.recipe_for(paper.claims[0])
    assert recipe is not None and recipe.name == "lenet-mnist"


def test_unknown_augmentation_names_field(tmp_path: Path) -> None:
    text = _error(_write(tmp_path, recipe=RECIPE.replace("[random_crop]", "[random_crop, mixup]")))
    assert "recipes[0] (lenet-mnist)" in text
    assert "unknown augmentation mixup" in text


def test_multistep_without_milestones_names_field(tmp_path: Path) -> None:
    text = _error(_write(tmp_path, recipe=RECIPE.replace(", milestones: [10]", "")))
    assert "recipes[0] (lenet-mnist), field schedule" in text
    assert "milestones" in text


def test_scale_jitter_without_range_names_field(tmp_path: Path) -> None:
    text = _error(_write(tmp_path, recipe=RECIPE.replace("[random_crop]", "[scale_jitter]")))
    assert "recipes[0] (lenet-mnist)" in text
    assert "scale_range" in text


def test_claim_naming_missing_recipe(tmp_path: Path) -> None:
    text = _error(_write(tmp_path, claim_extra=", recipe: lenet-cifar"))
    assert "names recipe 'lenet-cifar'" in text
    assert "lenet-mnist" in text  # the known recipes


def test_unknown_recipe_field_names_it(tmp_path: Path) -> None:
    text = _error(_write(tmp_path, recipe=RECIPE + "    label_smoothing: 0.1\n"))
    assert "recipes[0] (lenet-mnist), field label_smoothing" in text


def test_yaml_merge_keys_derive_recipes(tmp_path: Path) -> None:
    """Recipes that differ in a few fields derive from an anchored one (README, Recipes)."""
    base = RECIPE.replace("  - name:", "  - &base\n    name:", 1)
    derived = "  - <<: *base\n    name: lenet-mnist-long\n    epochs: 40\n"
    paper = load_paper_file(_write(tmp_path, recipe=base + derived))
    first, second = paper.recipes
    assert (second.name, second.epochs, first.epochs) == ("lenet-mnist-long", 40, 20)
    assert second.optimizer == first.optimizer and second.evaluation == first.evaluation


# --- the format's documentation ----------------------------------------------------------------


def _recipes_section(repo: Path) -> str:
    text = (repo / "repro" / "papers" / "README.md").read_text()
    match = re.search(r"^## Recipes\n(.*?)(?=^#{1,2} )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Recipes' section"
    return match.group(1)


def test_readme_lists_every_augmentation(repo: Path) -> None:
    section = _recipes_section(repo)
    for name in AUGMENTATIONS:
        assert f"| `{name}` |" in section, name


def test_readme_example_is_a_valid_recipe(repo: Path) -> None:
    block = re.search(r"```yaml\n(.*?)```", _recipes_section(repo), flags=re.S)
    assert block, "the Recipes section has a YAML example"
    data = yaml.safe_load(block.group(1))
    recipe = Recipe.model_validate(data["recipes"][0])
    get_model_spec(recipe.model)
