"""Detector training by recipe (repro.train.detector_fit), in this process (workers=0) on tiny
synthetic VOC 2007 + 2012 sets: Fast YOLO (2x2 grid on 128px inputs: the paper's 448px head is
too slow for CI) and Faster R-CNN ZF (shorter side 96), resume from checkpoints, the trained
weights' evaluation, the checks before any worker, and the accuracy suite's detection path."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from repro.claims import load_paper, load_paper_file
from repro.config import AccuracySettings
from repro.data.synth import write_voc
from repro.errors import ReproError
from repro.measure import measure_paper_local
from repro.recipes import Recipe
from repro.runner.plan import PaperPlan, plan_paper
from repro.runner.settings import RunSettings
from repro.suites.accuracy.reasons import not_run_reason
from repro.suites.accuracy.suite import evaluate_weights
from repro.train.detector_fit import DetectorFitConfig, fit_detector, validate
from repro.train.session import LocalSession

SOURCE = {"seed": "test", "section": "test"}


def yolo_recipe(**kw: Any) -> dict[str, Any]:
    base = {
        "name": "fast-yolo-test",
        "model": "fast_yolo",
        "model_kwargs": {"grid": 2},
        "dataset": "voc2007",
        "train_split": "trainval+voc2012:trainval",
        "eval_split": "test",
        "source": SOURCE,
        "optimizer": {"name": "sgd", "lr": 0.02},  # no momentum: smaller checkpoints
        "schedule": {"name": "multistep", "milestones": [1], "factor": 0.5},
        "batch_size": 4,
        "epochs": 2,
        "input_size": 128,
        "augmentation": ["translate_scale", "hsv_jitter"],
        "evaluation": {"resize": 128, "crop": 128, "metric": "voc07_map"},
    }
    return {**base, **kw}


def frcnn_recipe(**kw: Any) -> dict[str, Any]:
    small = {"min_size": 96, "max_size": 128, "box_batch_size_per_image": 32}
    base = yolo_recipe(
        name="frcnn-zf-test",
        model="faster_rcnn_zf",
        model_kwargs=small,
        optimizer={"name": "sgd", "lr": 0.001, "weight_decay": 0.0005},
        batch_size=2,
        epochs=1,
        input_size=96,
        augmentation=["hflip"],
        evaluation={"resize": 96, "crop": 128, "metric": "voc07_map"},
    )
    return {**base, **kw}


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("voc")
    v07 = write_voc(base / "07", splits={"trainval": 4, "test": 6}, seed=0)
    v12 = write_voc(base / "12", year="2012", splits={"trainval": 4}, seed=1)
    return {"voc2007": str(v07), "voc2012": str(v12)}


def config(voc: dict[str, str], tmp_path: Path, **kw: Any) -> DetectorFitConfig:
    base: dict[str, Any] = dict(
        recipe=yolo_recipe(),
        data_root=voc["voc2007"],
        data_roots={"voc2012": voc["voc2012"]},
        workers=0,
        loader_workers=0,
        storage_path=str(tmp_path / "runs"),
        run_name="det",
        torch_threads=1,
        checkpoint_every_epoch=False,  # the resume test asks for every epoch's
    )
    return DetectorFitConfig(**{**base, **kw})


def test_fast_yolo_trains_on_07_plus_12_and_its_weights_evaluate_alike(
    voc: dict[str, str], tmp_path: Path
) -> None:
    result = fit_detector(config(voc, tmp_path))
    (record,) = result.seeds
    history = record["history"]
    assert [e["epoch"] for e in history] == [1, 2]
    assert all(math.isfinite(e["loss"]) and e["seconds"] > 0 for e in history)
    assert history[1]["loss"] < history[0]["loss"]
    assert [e["lr"] for e in history] == pytest.approx([0.02, 0.01])  # the milestone at 1
    assert not record["diverged"] and 0.0 <= record["map"] <= 100.0
    assert "no ImageNet pre-training" in record["note"]
    assert record["protocol"] == "VOC07 11-point mAP on voc2007 test (6 images)"
    env = result.environment
    assert env["train_images"] == 8 and env["eval_images"] == 6 and env["steps_per_epoch"] == 2
    assert result.checkpoint == record["weights"]
    state = torch.load(record["weights"], weights_only=True)
    assert state["head.fc3.weight"].shape == (2 * 2 * (2 * 5 + 3), 4096)
    # the suite's evaluation of the saved weights gives the number training reported
    again = evaluate_weights(
        Recipe.model_validate(yolo_recipe()), voc["voc2007"], record["weights"], AccuracySettings()
    )
    assert record["detections"] > 0 and again["detections"] == record["detections"]
    assert again["map"] == pytest.approx(record["map"], abs=1e-9)


def test_resume_continues_at_the_saved_epoch(voc: dict[str, str], tmp_path: Path) -> None:
    recipe = yolo_recipe(augmentation=["hsv_jitter"])
    cfg = config(voc, tmp_path, recipe=recipe, eval_limit=2, checkpoint_every_epoch=True)
    straight = fit_detector(cfg)
    session = LocalSession(Path(straight.run_dir))
    _, epoch2 = session.checkpoints()
    shutil.rmtree(epoch2)  # as if the run had stopped after epoch 1
    resumed = fit_detector(cfg)
    before, after = straight.seeds[0]["history"], resumed.seeds[0]["history"]
    assert [e["epoch"] for e in after] == [1, 2]
    assert after[0]["time"] == before[0]["time"]  # epoch 1 came from the checkpoint
    assert after[1]["time"] > before[1]["time"]  # epoch 2 trained again, identically
    assert after[1]["loss"] == pytest.approx(before[1]["loss"], rel=1e-5)
    assert resumed.seeds[0]["map"] == pytest.approx(straight.seeds[0]["map"], abs=1e-9)
    assert resumed.environment["eval_images"] == 2
    assert fit_detector(cfg).seeds[0]["history"] == after  # complete: nothing trains


def test_faster_rcnn_zf_trains_and_evaluates_by_the_same_detections(
    voc: dict[str, str], tmp_path: Path
) -> None:
    cfg = config(voc, tmp_path, recipe=frcnn_recipe(), max_steps_per_epoch=1, eval_limit=2)
    result = fit_detector(cfg)
    (record,) = result.seeds
    assert len(record["history"]) == 1 and math.isfinite(record["history"][0]["loss"])
    assert "4-step alternating" in record["note"] and 0.0 <= record["map"] <= 100.0
    state = torch.load(record["weights"], weights_only=True)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4  # 3 + background
    settings = AccuracySettings(eval_limit=2)
    again = evaluate_weights(
        Recipe.model_validate(frcnn_recipe()), voc["voc2007"], record["weights"], settings
    )
    assert record["detections"] > 0 and again["detections"] == record["detections"]
    assert again["map"] == pytest.approx(record["map"], abs=1e-9)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"recipe": yolo_recipe(model="yolov3")}, "multi-scale anchor loss"),
        ({"recipe": yolo_recipe(model="yolov2", model_kwargs={}, input_size=100)}, "stride 32"),
        ({"recipe": yolo_recipe(model="alexnet_single")}, "R-CNN's selective-search pipeline"),
        ({"data_roots": {}}, "no root is given"),
        ({"data_roots": {"voc2012": "/nonexistent/voc"}}, "does not exist"),
        ({"recipe": yolo_recipe(augmentation=["pca_lighting"])}, "pca_lighting"),
        ({"recipe": yolo_recipe(schedule={"name": "plateau"})}, "plateau"),
        ({"recipe": yolo_recipe(input_size=96)}, "fully connected head"),
        ({"recipe": yolo_recipe(train_split="trainval+imagenet:train")}, "DATASET:SPLIT"),
        ({"num_classes": 20}, "num_classes"),
        ({"workers": 3}, "does not split evenly over 3"),
        ({"eval_limit": 0}, "eval_limit"),
    ],
)
def test_config_errors_before_any_worker(
    voc: dict[str, str], tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ReproError, match=message):
        validate(config(voc, tmp_path, **change))


def _paper(tmp_path: Path, recipes: list[dict[str, Any]]) -> Any:
    claims = [
        {
            "id": f"{r['model']}-map",
            "table": "t",
            "row": f"{r['model']} mAP",
            "metric": "map",
            "unit": "%",
            "value": 50.0,
            "kind": "accuracy",
            "tolerance": {"abs": 1.0},
            "source": SOURCE,
            "model": r["model"],
            "dataset": "voc2007",
        }
        for r in recipes
    ]
    doc = {"paper": "det_test", "title": "t", "authors": "t", "year": 2026}
    path = tmp_path / "det_test.yaml"
    path.write_text(yaml.safe_dump({**doc, "recipes": recipes, "claims": claims}))
    return load_paper_file(path)


def test_suite_reasons_name_the_anchor_loss_and_the_missing_2012_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPRO_DATA_VOC2012", raising=False)
    paper = _paper(tmp_path, [yolo_recipe(), yolo_recipe(name="yolov3-test", model="yolov3")])
    fast, v3 = paper.claims
    settings = AccuracySettings()
    assert "YOLOv3's multi-scale anchor loss" in str(not_run_reason(paper, v3, settings, {}))
    reason = str(not_run_reason(paper, fast, settings, {"voc2007": str(tmp_path)}))
    assert "dataset not present: voc2012" in reason
    assert "recipe fast-yolo-test trains on trainval+voc2012:trainval" in reason
    both = {"voc2007": str(tmp_path), "voc2012": str(tmp_path)}
    assert not_run_reason(paper, fast, settings, both) is None

    def plan_of(key: str, roots: dict[str, str]) -> PaperPlan:
        return plan_paper(load_paper(key), RunSettings(("accuracy",), roots, accuracy=settings))

    # the papers' own claims: YOLO trains on 07+12, Faster R-CNN's VOC 2007 recipe on 07 alone
    plan = plan_of("yolo_v1", {"voc2007": str(tmp_path)})
    notes = {r.claim_id: r.note for r in plan.not_run}
    for claim_id in ("yolo-map", "fast-yolo-map", "faster-rcnn-vgg16-map", "faster-rcnn-zf-map"):
        assert "dataset not present: voc2012" in notes[claim_id], notes[claim_id]
    roots = {"voc2007": str(tmp_path), "voc2012": str(tmp_path)}
    planned = plan_of("yolo_v1", roots).of("accuracy")
    assert {c.id for c in planned} >= {"yolo-map", "fast-yolo-map", "faster-rcnn-zf-map"}
    frcnn = plan_of("faster_rcnn", {"voc2007": str(tmp_path)})
    assert "vgg16-voc2007-map" in {c.id for c in frcnn.of("accuracy")}


def test_suite_trains_a_detection_claim_by_its_recipe(voc: dict[str, str], tmp_path: Path) -> None:
    paper = _paper(tmp_path, [yolo_recipe(augmentation=[])])
    settings = AccuracySettings(workers=0, epochs=1, storage=str(tmp_path / "runs"))
    (result,) = measure_paper_local(paper, ["accuracy"], voc, accuracy=settings)
    assert result.verdict == "deviates", result.note  # 1 epoch on 8 images: far from 50%
    assert 0.0 <= float(result.measured) < 50.0
    assert "trained by recipe fast-yolo-test (1 epochs on trainval+voc2012:trainval" in result.note
    assert "no ImageNet pre-training" in result.note
    (run,) = (tmp_path / "runs").glob("det_test-fast-yolo-test-*")  # named by the run's key
    assert (run / "weights" / "fast-yolo-test-seed0.pt").is_file()


@pytest.mark.slow
def test_two_ray_workers_train_a_detector_data_parallel(
    voc: dict[str, str], tmp_path: Path
) -> None:
    result = fit_detector(config(voc, tmp_path, workers=2, run_name="ray2", torch_threads=None))
    (record,) = result.seeds
    assert result.environment["world_size"] == 2 and result.environment["parallel"] == "ddp"
    assert len(record["history"]) == 2 and all(math.isfinite(e["loss"]) for e in record["history"])
    assert result.environment["eval_images"] == 6 and record["detections"] > 0
    # both ranks' shards were scored: the weights evaluated alone give the same number
    again = evaluate_weights(
        Recipe.model_validate(yolo_recipe()), voc["voc2007"], record["weights"], AccuracySettings()
    )
    assert again["detections"] == record["detections"]
    assert again["map"] == pytest.approx(record["map"], abs=1e-6)
