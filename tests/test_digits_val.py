"""The digits' validation split, the small-data augmentations and the val-only recipe sweep."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from repro.data import augment
from repro.data import training_sets as datasets
from repro.data.training_sets import DIGITS_SPLITS, digits_field, digits_split_indices
from repro.demos.digits import DIGITS_RECIPE
from repro.errors import ReproError
from repro.recipes import AUGMENTATIONS, Recipe

ROOT = Path(__file__).resolve().parent.parent


def _sweep_module() -> ModuleType:
    name = "digits_sweep_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "digits_sweep.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- the validation split ----------------------------------------------------------------------


def test_val_split_is_carved_from_train_disjoint_stratified_and_fixed() -> None:
    parts = {s: digits_split_indices(s) for s in DIGITS_SPLITS}
    train, rest, val, test = (set(parts[s]) for s in DIGITS_SPLITS)
    assert all(len(set(p)) == len(p) for p in parts.values())  # no index twice
    assert (len(train), len(rest), len(val), len(test)) == (1347, 1078, 269, 450)
    assert rest | val == train and not rest & val
    assert not val & test and not rest & test and not train & test
    assert parts == {s: digits_split_indices(s) for s in DIGITS_SPLITS}  # the same every call
    _, labels = datasets._digits_raw()
    for c in range(10):
        in_train = sum(1 for i in train if labels[i] == c)
        in_val = sum(1 for i in val if labels[i] == c)
        assert in_val == round(in_train * datasets.DIGITS_VAL_FRACTION)  # 20% of each class
    # The arrays follow the indices: val's images are train's at those positions.
    train_x, train_y = datasets.digits_arrays("train")
    val_x, val_y = datasets.digits_arrays("val")
    at = [parts["train"].index(i) for i in parts["val"]]
    assert torch.equal(val_x, train_x[at]) and torch.equal(val_y, train_y[at])


def test_val_split_loads_as_a_dataset_and_unknown_splits_fail() -> None:
    val, classes = datasets.load_dataset("digits", None, "val")
    assert len(val) == 269 and classes == [str(d) for d in range(10)]
    x, y = val[0]
    assert x.shape == (1, 32, 32) and 0 <= y < 10
    with pytest.raises(ReproError, match="no split 'validation'"):
        datasets.load_dataset("digits", None, "validation")


def test_digits_field_sets_the_digit_size_and_restores_it() -> None:
    default, _ = datasets.digits_arrays("val")
    with digits_field(20):
        small, _ = datasets.digits_arrays("val")
    again, _ = datasets.digits_arrays("val")
    assert torch.equal(default, again)  # the block's size does not leak out
    ink_rows = small.amax(dim=(0, 1, 3)) > 0
    assert not ink_rows[:6].any() and not ink_rows[26:].any()  # 20 px, 6-pixel margins
    assert ink_rows[6] or ink_rows[25]
    assert datasets.digits_arrays("val", inner=20)[0].equal(small)
    default_rows = default.amax(dim=(0, 1, 3)) > 0
    margin = (32 - datasets.DIGITS_INNER) // 2
    assert not default_rows[:margin].any() and not default_rows[32 - margin :].any()
    assert default_rows[margin] or default_rows[31 - margin]  # the digit reaches its margin
    with pytest.raises(ReproError, match="digit size 40"):
        with digits_field(40):
            pass
    with pytest.raises(ReproError, match="digit size 4 "):
        datasets.digits_arrays("val", inner=4)


# --- augmentations -----------------------------------------------------------------------------


def _digit() -> torch.Tensor:
    return datasets.digits_arrays("val", inner=20)[0][3]


def test_random_shift_keeps_shape_moves_ink_and_is_identity_at_zero() -> None:
    image = _digit()
    assert augment.RandomShift(0)(image) is image
    torch.manual_seed(0)
    shifted = [augment.RandomShift(2)(image) for _ in range(20)]
    assert all(s.shape == image.shape for s in shifted)
    # At 20 px the digit sits inside a 6-pixel margin, so a 2-pixel shift loses no ink.
    assert all(math.isclose(float(s.sum()), float(image.sum()), rel_tol=1e-6) for s in shifted)
    assert any(not torch.equal(s, image) for s in shifted)
    moved = augment.shift_image(image, 1, -2)
    assert torch.equal(moved[:, 1:, :-2], image[:, :-1, 2:]) and not moved[:, 0].any()
    with pytest.raises(ReproError, match="negative"):
        augment.RandomShift(-1)


def test_small_affine_is_identity_at_zero_and_matches_torchvision() -> None:
    image = _digit()
    assert augment.SmallAffine(0, 0, 0, 0)(image) is image
    identity = ((1.0, 0.0), (0.0, 1.0))
    assert torch.equal(augment.warp_affine(image, identity, (0.0, 0.0)), image)
    assert torch.equal(
        augment.warp_affine(image, identity, (2.0, -1.0)), augment.shift_image(image, -1, 2)
    )
    angle = math.radians(10)
    rotate = ((math.cos(angle), -math.sin(angle)), (math.sin(angle), math.cos(angle)))
    ours = augment.warp_affine(image, rotate, (1.0, 2.0))
    theirs = F.affine(
        image,
        angle=10.0,
        translate=[1, 2],
        scale=1.0,
        shear=[0.0, 0.0],
        interpolation=InterpolationMode.BILINEAR,
    )
    assert torch.allclose(ours, theirs, atol=1e-5) and not torch.allclose(ours, image)
    torch.manual_seed(0)
    out = augment.SmallAffine()(image)
    assert out.shape == image.shape and not torch.equal(out, image)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 + 1e-6
    with pytest.raises(ReproError, match="out of range"):
        augment.SmallAffine(scale=1.5)


def test_recipes_accept_the_new_augmentations_in_the_training_pipeline() -> None:
    for name, kind in (("random_shift", augment.RandomShift), ("affine", augment.SmallAffine)):
        assert name in AUGMENTATIONS
        recipe = Recipe.model_validate(DIGITS_RECIPE.model_dump() | {"augmentation": [name]})
        pipeline = augment.train_transform(recipe, channels=1)
        assert any(isinstance(step, kind) for step in pipeline.steps)
        torch.manual_seed(1)
        assert pipeline(_digit()).shape == (1, 32, 32)


# --- the sweep ---------------------------------------------------------------------------------


def test_sweep_recipe_trains_on_train_minus_val_and_scores_val() -> None:
    sweep = _sweep_module()
    recipe = sweep.val_recipe(sweep.Point(20, 24, 0.006, "affine"))
    assert (recipe["train_split"], recipe["eval_split"]) == ("train-minus-val", "val")
    assert recipe["optimizer"]["lr"] == 0.006 and recipe["epochs"] == 24.0
    assert recipe["augmentation"] == ["affine"]
    assert sweep.val_recipe(sweep.Point(20, 24, 0.006, "none"))["augmentation"] == []
    with pytest.raises(ReproError, match="unknown augmentation"):
        sweep.grid(augmentations=("cutout",))


def test_sweep_choice_prefers_lowest_val_then_cheaper_and_simpler() -> None:
    sweep = _sweep_module()

    def row(size: int, epochs: int, lr: float, aug: str, mean: float) -> dict[str, object]:
        return {
            "digit_size": size,
            "epochs": epochs,
            "lr": lr,
            "augmentation": aug,
            "mean_val_error": mean,
        }

    rows = [row(24, 16, 0.004, "none", 3.0), row(20, 32, 0.002, "affine", 2.5)]
    assert sweep.choose(rows)["augmentation"] == "affine"
    tied = [row(24, 32, 0.004, "none", 2.5), row(28, 16, 0.004, "affine", 2.5)]
    assert sweep.choose(tied)["epochs"] == 16  # fewer epochs first
    tied = [row(24, 16, 0.004, "affine", 2.5), row(28, 16, 0.006, "random_shift", 2.5)]
    assert sweep.choose(tied)["augmentation"] == "random_shift"
    with pytest.raises(ReproError, match="no measured points"):
        sweep.choose([])


def test_sweep_runs_on_val_only_writes_rows_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = _sweep_module()
    loaded: list[str] = []
    real = datasets.digits_arrays

    def recording(split: str, inner: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        loaded.append(split)
        return real(split, inner)

    monkeypatch.setattr(datasets, "digits_arrays", recording)
    point = sweep.Point(20, 1, 0.004, "random_shift")
    summary = sweep.run_sweep([point], seeds=(0,), out_dir=tmp_path, max_steps_per_epoch=4)
    assert sorted(set(loaded)) == ["train-minus-val", "val"]  # test is never loaded
    with (tmp_path / sweep.CSV_NAME).open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["train_images"], row["eval_images"]) == ("1078", "269")
    assert row["digit_size"] == "20" and row["augmentation"] == "random_shift"
    error = float(row["val_errors"])
    assert 0.0 <= error <= 100.0 and float(row["mean_val_error"]) == pytest.approx(error)
    assert summary["chosen"]["val_errors"] == row["val_errors"]
    assert summary["split_sizes"] == {
        "train": 1347,
        "train-minus-val": 1078,
        "val": 269,
        "test": 450,
    }
    loaded.clear()
    again = sweep.run_sweep([point], seeds=(0,), out_dir=tmp_path, max_steps_per_epoch=4)
    assert loaded == [] and again["points"] == 1  # the finished point is not trained again
    (tmp_path / sweep.CSV_NAME).write_text("a,b\n1,2\n")
    with pytest.raises(ReproError, match="not this sweep's"):
        sweep.run_sweep([point], seeds=(0,), out_dir=tmp_path)
