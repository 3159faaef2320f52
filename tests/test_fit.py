"""Recipe training: schedules, optimizers, augmentation, the digits loader and fit_worker run in
this process (workers=0) on small slices of the real digits."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from repro.data import augment
from repro.data.training_sets import LENET_BACKGROUND, LENET_INK, EpochShard, load_dataset
from repro.errors import DataError, ReproError
from repro.recipes import AUGMENTATIONS, Optimizer, Recipe, Schedule
from repro.recipes.schedules import LrSchedule, make_optimizer
from repro.tracking import spool, training
from repro.tracking.client import SPOOL_ENV
from repro.train.fit import FitConfig, fit, validate
from repro.train.session import LocalSession

SOURCE = {"seed": "test", "section": "generated"}
EVAL = {"resize": 32, "crop": 32, "crops": 1, "metric": "top1_error"}


def recipe(**kw: Any) -> dict[str, Any]:
    base = {
        "name": "lenet5-digits-test",
        "model": "lenet5",
        "dataset": "digits",
        "eval_split": "test",
        "source": SOURCE,
        "optimizer": {"name": "adam", "lr": 0.002},
        "schedule": {"name": "constant"},
        "batch_size": 32,
        "epochs": 2,
        "input_size": 32,
        "evaluation": EVAL,
    }
    return {**base, **kw}


# --- schedules ---------------------------------------------------------------------------------


def _lr(schedule: dict[str, Any], epoch: int, step: int = 0, epochs: float = 100) -> float:
    return LrSchedule(Schedule(**schedule), 0.1, epochs, steps_per_epoch=10).lr(epoch, step)


def test_step_multistep_exponential_rates_at_known_epochs() -> None:
    step = {"name": "step", "step_epochs": 30, "factor": 0.1}
    assert [_lr(step, e) for e in (0, 29)] == [0.1, 0.1]
    assert _lr(step, 29, 9) == pytest.approx(0.1)  # last step before the boundary
    assert _lr(step, 30) == pytest.approx(0.01) and _lr(step, 60) == pytest.approx(0.001)
    multi = {"name": "multistep", "milestones": [2, 5], "factor": 0.5}
    assert [_lr(multi, e) for e in (0, 1, 2, 4, 5, 9)] == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    )
    googlenet = {"name": "exponential", "step_epochs": 8, "factor": 0.96}
    assert _lr(googlenet, 7) == pytest.approx(0.1)
    assert _lr(googlenet, 16) == pytest.approx(0.1 * 0.96**2)


def test_poly_cosine_constant_and_warmup() -> None:
    assert _lr({"name": "poly", "power": 2.0}, 50, epochs=100) == pytest.approx(0.1 * 0.25)
    assert _lr({"name": "poly"}, 99, 5, epochs=100) == pytest.approx(0.1 * 0.005)
    assert _lr({"name": "cosine"}, 50, epochs=100) == pytest.approx(0.05)
    assert _lr({"name": "cosine"}, 0, epochs=100) == pytest.approx(0.1)
    assert _lr({"name": "constant"}, 77) == 0.1
    warm = {"name": "constant", "warmup_epochs": 2}
    assert _lr(warm, 0, 0) == pytest.approx(0.1 / 20)  # first of 20 warm-up steps
    assert _lr(warm, 0, 9) == pytest.approx(0.05)
    assert _lr(warm, 2, 0) == pytest.approx(0.1)


def test_plateau_reduces_after_patience_and_state_round_trips() -> None:
    s = LrSchedule(Schedule(name="plateau", patience=1, factor=0.1), 0.01, 90, 5)
    for err in (50.0, 40.0, 41.0):  # one epoch without improvement: within patience
        s.observe(err)
    assert s.lr(3) == pytest.approx(0.01)
    s.observe(40.0)  # second in a row: reduce
    assert s.lr(4) == pytest.approx(0.001)
    copy = LrSchedule(Schedule(name="plateau", patience=1, factor=0.1), 0.01, 90, 5)
    copy.load_state_dict(s.state_dict())
    assert copy.lr(5) == pytest.approx(0.001) and copy.state_dict() == s.state_dict()
    s.observe(30.0)
    s.observe(30.0)
    assert s.lr(7) == pytest.approx(0.001)  # improved, then one bad epoch: no reduction


def test_make_optimizer_follows_the_recipe() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(
        params,
        Optimizer(name="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
    )
    assert isinstance(sgd, torch.optim.SGD)
    group = sgd.param_groups[0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)
    assert isinstance(make_optimizer(params, Optimizer(name="adam", lr=1e-3)), torch.optim.Adam)
    rms = make_optimizer(params, Optimizer(name="rmsprop", lr=0.045, momentum=0.9))
    assert isinstance(rms, torch.optim.RMSprop) and rms.param_groups[0]["alpha"] == 0.9


# --- augmentation ------------------------------------------------------------------------------


def _image_recipe(aug: list[str], **kw: Any) -> Recipe:
    return Recipe(
        **recipe(
            dataset="imagenet",
            augmentation=aug,
            input_size=24,
            resize=28,
            scale_range=[26, 32],
            evaluation={"resize": 28, "crop": 24},
            **kw,
        )
    )


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_augmentation_builds_and_gives_the_input_size(name: str) -> None:
    torch.manual_seed(0)
    image = Image.fromarray((torch.rand(40, 50, 3) * 255).to(torch.uint8).numpy())
    out = augment.train_transform(_image_recipe([name]), channels=3)(image)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    assert -0.5 < float(out.min()) and float(out.max()) < 1.5  # [0, 1] plus lighting noise
    grey = torch.rand(1, 40, 50)
    if name == "pca_lighting":
        with pytest.raises(ReproError, match="pca_lighting"):
            augment.train_transform(_image_recipe([name]), channels=1)
    else:
        assert augment.train_transform(_image_recipe([name]), channels=1)(grey).shape == (
            1,
            24,
            24,
        )


def test_augment_rejects_two_crops_and_eval_takes_the_centre() -> None:
    with pytest.raises(ReproError, match="random_crop and pad_crop"):
        augment.train_transform(_image_recipe(["random_crop", "pad_crop"]), channels=3)
    image = torch.arange(40 * 50, dtype=torch.float32).view(1, 40, 50) / 2000
    out = augment.center_crop_transform({"resize": 40, "crop": 20}, channels=3)(image)
    assert out.shape == (3, 20, 20)
    assert torch.allclose(out[0], image[0, 10:30, 15:35])  # centre crop, grey repeated
    lighting = augment.PcaLighting()
    flat = torch.full((3, 4, 4), 0.5)
    shifted = lighting(flat)
    assert not torch.equal(shifted, flat)  # one RGB offset per image, the same at every pixel
    assert torch.allclose(shifted - flat, (shifted - flat)[:, :1, :1].expand(3, 4, 4))


# --- datasets ----------------------------------------------------------------------------------


def test_digits_split_shapes_range_determinism() -> None:
    train, classes = load_dataset("digits", None, "train")
    test, _ = load_dataset("digits", None, "test")
    assert classes == [str(d) for d in range(10)]
    assert (len(train), len(test)) == (1347, 450)  # 1,797 real digits, 75/25 by class
    x, y = train[0]
    assert x.shape == (1, 32, 32) and isinstance(y, int)
    assert float(x.min()) == pytest.approx(LENET_BACKGROUND, abs=1e-5)
    assert LENET_BACKGROUND < float(x.max()) <= LENET_INK + 1e-5
    per_class = torch.bincount(test.targets, minlength=10)
    assert int(per_class.min()) >= 43 and int(per_class.max()) <= 47  # ~25% of ~180 each
    again, _ = load_dataset("digits", None, "test")
    assert torch.equal(again.data, test.data) and torch.equal(again.targets, test.targets)
    joined = torch.cat([train.data, test.data]).flatten(1)
    assert torch.unique(joined, dim=0).shape[0] >= 1780  # the splits do not share images
    with pytest.raises(ReproError, match="no split 'validation'"):
        load_dataset("digits", None, "validation")


def test_missing_datasets_raise_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mnist is not under"):
        load_dataset("mnist", tmp_path, "train")
    with pytest.raises(DataError, match="cifar10 is not under"):
        load_dataset("cifar10", tmp_path, "test")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagenet", tmp_path / "absent", "val")
    with pytest.raises(ReproError, match="unknown dataset"):
        load_dataset("svhn", tmp_path, "train")


def test_imagefolder_dataset_is_normalised_at_the_crop(tmp_path: Path) -> None:
    for cls in ("n01", "n02"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 30), (255, 255, 255)).save(tmp_path / "val" / cls / f"{i}.png")
    ds, classes = load_dataset(
        "imagefolder", tmp_path, "val", augment.center_crop_transform(EVAL | {"crop": 24}, 3)
    )
    assert classes == ["n01", "n02"] and len(ds) == 4
    x, y = ds[3]
    assert x.shape == (3, 24, 24) and y == 1
    white = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[:, 0, 0], white, atol=1e-4)


def test_epoch_shards_make_the_same_global_batches() -> None:
    one = EpochShard(50, batch=8, steps=6, rank=0, world=1)
    halves = [EpochShard(50, batch=8, steps=6, rank=r, world=2) for r in (0, 1)]
    for s in (one, *halves):
        s.set_epoch(seed=3, epoch=1)
    whole, parts = list(one), [list(h) for h in halves]
    assert len(whole) == 48 and len(set(whole)) == 48
    for step in range(6):
        assert sorted(whole[step * 8 : step * 8 + 8]) == sorted(
            parts[0][step * 4 : step * 4 + 4] + parts[1][step * 4 : step * 4 + 4]
        )
    one.set_epoch(seed=3, epoch=2)
    assert list(one) != whole  # a new permutation each epoch


# --- fit ---------------------------------------------------------------------------------------


def _config(tmp_path: Path, **kw: Any) -> FitConfig:
    base: dict[str, Any] = dict(
        recipe=recipe(),
        workers=0,
        seeds=[0],
        max_steps_per_epoch=12,
        loader_workers=0,
        storage_path=str(tmp_path / "runs"),
        run_name="tiny",
        torch_threads=1,  # as a Ray worker with one CPU; two threads crawl on a busy machine
    )
    return FitConfig(**{**base, **kw})


def test_fit_in_process_learns_and_saves_weights(tmp_path: Path) -> None:
    result = fit(_config(tmp_path))
    (record,) = result.seeds
    history = record["history"]
    assert [e["epoch"] for e in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    assert record["top1_error"] < 60.0  # chance is 90% on 10 balanced classes
    assert record["top1_error"] == history[-1]["top1_error"] and not record["diverged"]
    assert result.environment["train_images"] == 1347 and result.environment["world_size"] == 1
    assert result.checkpoint is not None and result.checkpoint == record["weights"]
    state = torch.load(result.checkpoint, weights_only=True)
    assert "C1.0.weight" in state and state["C1.0.weight"].shape == (6, 1, 5, 5)


def test_resume_continues_at_the_saved_epoch(tmp_path: Path) -> None:
    config = _config(tmp_path, max_steps_per_epoch=6, recipe=recipe(schedule={"name": "cosine"}))
    straight = fit(config)
    session = LocalSession(Path(straight.run_dir))
    epoch1, epoch2 = session.checkpoints()
    shutil.rmtree(epoch2)  # as if the run had stopped after epoch 1
    resumed = fit(config)
    before, after = straight.seeds[0]["history"], resumed.seeds[0]["history"]
    assert [e["epoch"] for e in after] == [1, 2]  # not duplicated
    assert after[0]["time"] == before[0]["time"]  # epoch 1 came from the checkpoint
    assert after[1]["time"] > before[1]["time"]  # epoch 2 trained again ...
    assert after[1]["loss"] == pytest.approx(before[1]["loss"], rel=1e-5)  # ... identically
    assert after[1]["lr"] == pytest.approx(before[1]["lr"])
    again = fit(config)  # complete: nothing to train, the same records
    assert again.seeds[0]["history"] == after


def test_several_seeds_train_in_one_call(tmp_path: Path) -> None:
    result = fit(_config(tmp_path, seeds=[0, 1], epochs=1, max_steps_per_epoch=3, run_name="two"))
    assert [r["seed"] for r in result.seeds] == [0, 1]
    assert all(len(r["history"]) == 1 and math.isfinite(r["top1_error"]) for r in result.seeds)
    w0, w1 = (torch.load(r["weights"], weights_only=True) for r in result.seeds)
    assert not torch.equal(w0["C1.0.weight"], w1["C1.0.weight"])  # seeds differ


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataset": "svhn"}, "unknown dataset 'svhn'"),
        ({"dataset": "mnist"}, "needs its data folder"),
        ({"dataset": "mnist", "data_root": "/nonexistent/x"}, "does not exist"),
        ({"workers": 3, "recipe": recipe(batch_size=32)}, "does not split evenly over 3"),
        ({"seeds": [1, 1]}, "repeats a seed"),
        ({"seeds": []}, "no seeds"),
        ({"epochs": 0}, "not positive"),
        ({"recipe": recipe(optimizer={"name": "sgd", "lr": -1})}, "`optimizer.lr`"),
        ({"recipe": recipe(model="no_such_net")}, "no_such_net"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_config_errors_before_any_worker(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ReproError, match=message):
        validate(_config(tmp_path, **change))


def test_mlflow_gets_one_run_per_seed_with_epoch_losses(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = _config(tmp_path, epochs=2, max_steps_per_epoch=3, tracking_uri=uri, run_name="ml")
    result = fit(config)
    run = training.find_train_run(uri, "ml-seed0")
    assert run is not None and run["status"] == "FINISHED"
    assert [step for step, _ in run["history"]["loss"]] == [1, 2]
    assert run["metrics"]["top1_error"] == pytest.approx(result.seeds[0]["top1_error"])
    assert run["params"]["recipe"] == "lenet5-digits-test"


def test_a_store_failing_mid_fit_warns_once_spools_and_sync_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A recipe fit meets a store that goes away mid-run as every training does: it finishes
    with its results, warns once, and `repro sync` (spool.replay) logs what was kept."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    real = training.log_train_steps
    calls = []

    def fail_after_first(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) > 1:
            raise ConnectionError("503 Service Unavailable")
        real(*args, **kwargs)

    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    config = _config(tmp_path, epochs=3, max_steps_per_epoch=2, tracking_uri=uri, run_name="out")
    with monkeypatch.context() as mp:
        mp.setattr(training, "log_train_steps", fail_after_first)
        with caplog.at_level(logging.WARNING, logger="repro.tracking"):
            result = fit(config)
    (record,) = result.seeds
    assert [e["epoch"] for e in record["history"]] == [1, 2, 3]
    assert math.isfinite(record["top1_error"]) and record["weights"]
    assert len([r for r in caplog.records if "tracking store failed" in r.getMessage()]) == 1
    assert len(calls) == 2  # epoch 1 logged, epoch 2 failed, epoch 3 not tried
    (spooled,) = spool.pending()
    assert spool.replay().replayed and not spool.pending()
    run = training.find_train_run(uri, "out-seed0")
    assert run is not None and run["status"] == "FINISHED"
    assert [v for _, v in run["history"]["loss"]] == pytest.approx(
        [e["loss"] for e in record["history"]]
    )
    assert run["metrics"]["top1_error"] == pytest.approx(record["top1_error"])


def test_a_checkpoint_resumes_only_the_run_that_wrote_it(tmp_path: Path) -> None:
    """Resuming compares the data the run reads (the plan's facts) with the checkpoint's, and
    says which differ, instead of returning another run's result."""
    fit(_config(tmp_path, epochs=1, max_steps_per_epoch=3, run_name="same"))
    with pytest.raises(
        ReproError, match=r"another run \(steps_per_epoch 3\); this run has steps_per_epoch 2"
    ):
        fit(_config(tmp_path, epochs=1, max_steps_per_epoch=2, run_name="same"))


def test_each_epoch_has_its_last_steps_rate_and_a_line_on_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warm = recipe(schedule={"name": "constant", "warmup_epochs": 1})
    result = fit(_config(tmp_path, recipe=warm, max_steps_per_epoch=4, run_name="warm"))
    history = result.seeds[0]["history"]
    # the warm-up ramps over epoch 1's four steps (1/4 ... 4/4 of the rate): its last step's
    assert history[0]["lr"] == pytest.approx(0.002) and history[1]["lr"] == pytest.approx(0.002)
    lines = [s for s in capsys.readouterr().err.splitlines() if s.startswith("warm seed 0")]
    assert [s.split(":")[0] for s in lines] == ["warm seed 0 epoch 1/2", "warm seed 0 epoch 2/2"]
    assert "top-1 error" in lines[-1] and "images/s" in lines[-1] and "lr " in lines[-1]
