"""The accuracy and dataset suites: which claims run when a dataset is present, the reasons of
those that do not, verdicts over seeds, weights supplied by the user, and the end-to-end path on
a paper file of the test's own (LeNet-5 on scikit-learn's digits, in-process)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from repro.claims import Claim, list_papers, load_paper, load_paper_file
from repro.cli import main
from repro.config import AccuracySettings, parse_settings
from repro.data.synth import write_voc
from repro.demos.digits import DIGITS_RECIPE
from repro.errors import ReproError
from repro.measure import measure_paper_local
from repro.models import build_model
from repro.runner import run_papers
from repro.runner.plan import plan_paper
from repro.runner.settings import RunSettings
from repro.runner.write import CURVE_COLUMNS
from repro.suites.accuracy import reasons, run_key, suite
from repro.suites.accuracy.reasons import not_run_reason
from repro.suites.accuracy.suite import evaluate_weights, group_accuracy_claims, judge_runs
from repro.train.fit import FitConfig, fit

DATASETS = ("imagenet", "cifar10", "mnist", "voc2007", "voc2010", "coco", "sun397")
KNOWN_REASONS = (
    "the accuracy suite measures",
    "no registered model",
    "an ensemble of",
    "no recipe in",
    "training ",
    "classification on",
    "the dataset suite counts",
    "the dataset suite has no reader",
    "the transfer protocol needs",
    "an ablation",
    "R-CNN fine-tunes ImageNet-trained",
)


@pytest.mark.parametrize("key", list_papers())
def test_accuracy_claims_not_run_without_their_dataset(key: str) -> None:
    paper = load_paper(key)
    suites = ("analytic", "accuracy", "dataset")
    plan = plan_paper(paper, RunSettings(suites, {}, accuracy=AccuracySettings()))
    for result in plan.not_run:
        if result.kind in ("accuracy", "dataset"):
            assert result.note.startswith("dataset not present"), result
    assert not plan.of("accuracy") and not plan.of("dataset")


@pytest.mark.parametrize("key", list_papers())
def test_accuracy_claims_run_or_say_why_when_data_is_present(key: str, tmp_path: Path) -> None:
    """With every dataset root present, each accuracy claim is planned, or not-run for a reason
    other than the dataset (ensembles, other methods' entries, comparisons)."""
    paper = load_paper(key)
    roots = {name: str(tmp_path) for name in DATASETS}
    plan = plan_paper(
        paper, RunSettings(("accuracy", "dataset"), roots, accuracy=AccuracySettings())
    )
    planned = {c.id for c in plan.of("accuracy")} | {c.id for c in plan.of("dataset")}
    for claim in paper.claims:
        if claim.kind not in ("accuracy", "dataset") or claim.dataset not in DATASETS:
            continue
        reason = next((r.note for r in plan.not_run if r.claim_id == claim.id), None)
        if claim.id in planned:
            assert reason is None
            continue
        assert reason is not None and not reason.startswith("dataset not present"), claim.id
        assert reason.startswith(KNOWN_REASONS), reason
        if claim.kind == "accuracy" and claim.model and claim.ensemble == 1:
            # a single registered model on a classification set trains by its recipe
            if claim.metric in ("top1_error", "top5_error", "top5_accuracy"):
                assert claim.dataset not in ("imagenet", "cifar10"), (claim.id, reason)


def _claim(value: float, tol: dict) -> Claim:
    return Claim.model_validate(
        {
            "table": "t",
            "row": "r",
            "metric": "top1_error",
            "unit": "%",
            "value": value,
            "kind": "accuracy",
            "tolerance": tol,
            "source": {"seed": "s", "section": "x"},
            "model": "lenet5",
            "dataset": "digits",
        }
    )


def test_verdict_uses_the_confidence_interval_of_the_seeds() -> None:
    claim = _claim(2.0, {"abs": 0.5})
    assert judge_runs(claim, [2.1])[0] == "reproduced"
    assert judge_runs(claim, [3.0])[0] == "deviates"
    # mean 2.9 is outside 2.0 +- 0.5, but the runs spread so widely the interval reaches it
    verdict, note, mean = judge_runs(claim, [1.0, 4.8, 2.9])
    assert verdict == "reproduced" and "95% CI" in note and mean == pytest.approx(2.9)
    # tight runs far from the claim
    assert judge_runs(claim, [4.0, 4.01, 3.99])[0] == "deviates"


def test_weights_flags_name_the_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ReproError, match="MODEL=PATH"):
        parse_settings("", weights=["lenet5"])
    with pytest.raises(ReproError, match="does not exist"):
        parse_settings("", weights=[f"lenet5={tmp_path / 'nope.pt'}"]).accuracy_settings()
    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    monkeypatch.setenv("REPRO_WEIGHTS_VGG_D", str(f))
    s = parse_settings(f"weights: {{alexnet: {f}}}", weights=[f"lenet5={f}"])
    assert set(s.accuracy_settings().weights) >= {"alexnet", "lenet5", "vgg_d"}
    with pytest.raises(ReproError, match="unknown key `accuracy.sedes`") as err:
        parse_settings("accuracy: {sedes: 3}")
    assert "did you mean `seeds`?" in err.value.fix


DIGITS_PAPER = {
    "paper": "digits_test",
    "title": "LeNet-5 on the digits (a test paper)",
    "authors": "tests",
    "year": 2026,
    "recipes": [
        {
            "name": "lenet5-digits",
            "model": "lenet5",
            "dataset": "digits",
            "train_split": "train",
            "eval_split": "test",
            "source": {"seed": "test", "section": "test"},
            "optimizer": {"name": "sgd", "lr": 0.004, "momentum": 0.9},
            "schedule": {"name": "cosine", "warmup_epochs": 1},
            "batch_size": 16,
            "epochs": 4,
            "input_size": 32,
            "evaluation": {"resize": 32, "crop": 32, "crops": 1, "metric": "top1_top5"},
        }
    ],
    "claims": [
        {
            "id": "error",
            "table": "t",
            "row": "LeNet-5 test error",
            "metric": "top1_error",
            "unit": "%",
            "value": 3.0,
            "kind": "accuracy",
            "tolerance": {"abs": 7.0},
            "source": {"seed": "test", "section": "test"},
            "model": "lenet5",
            "dataset": "digits",
        },
        {
            "id": "ensemble",
            "table": "t",
            "row": "an ensemble entry",
            "metric": "top1_error",
            "unit": "%",
            "value": 1.0,
            "kind": "accuracy",
            "tolerance": {"abs": 0.1},
            "source": {"seed": "test", "section": "test"},
            "model": "lenet5",
            "dataset": "digits",
            "ensemble": 3,
        },
    ],
}


@pytest.fixture
def digits_paper(tmp_path: Path):
    path = tmp_path / "digits_test.yaml"
    path.write_text(yaml.safe_dump(DIGITS_PAPER))
    return load_paper_file(path)


def test_accuracy_suite_trains_by_the_recipe_and_judges(digits_paper, tmp_path: Path) -> None:
    settings = AccuracySettings(workers=0, seeds=1, storage=str(tmp_path / "runs"))
    out = tmp_path / "out"
    run = RunSettings(
        suites=("accuracy",), out_dir=out, use_ray=False, papers_dir=tmp_path, accuracy=settings
    )
    (paper_run,) = run_papers(["digits_test"], run)
    results = {r.claim_id: r for r in paper_run.results}
    # the training curve beside the results: a row per epoch, the last one the judged error
    with (out / "digits_test.curve.csv").open(newline="") as fh:
        curve = list(csv.DictReader(fh))
    assert list(curve[0]) == list(CURVE_COLUMNS)
    assert [int(r["epoch"]) for r in curve] == list(range(1, len(curve) + 1))
    assert {r["recipe"] for r in curve} == {"lenet5-digits"} and float(curve[-1]["lr"]) > 0
    assert float(curve[-1]["images_per_s"]) > 0
    trained = results["error"]
    assert float(trained.measured) == pytest.approx(float(curve[-1]["top1_error"]), abs=1e-3)
    assert trained.verdict in ("reproduced", "deviates"), trained.note
    assert 0.0 <= float(trained.measured) < 10.0, trained  # it learned: chance is 90%
    assert "trained by recipe lenet5-digits" in trained.note
    assert results["ensemble"].verdict == "not-run"
    assert "ensemble of 3" in results["ensemble"].note


def test_accuracy_suite_evaluates_supplied_weights(digits_paper, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "lenet5_untrained.pt"
    torch.save(build_model("lenet5").state_dict(), weights)
    settings = AccuracySettings(workers=0, weights={"lenet5": str(weights)})
    (result,) = [
        r
        for r in measure_paper_local(digits_paper, ["accuracy"], {}, accuracy=settings)
        if r.claim_id == "error"
    ]
    # untrained weights: near chance, far outside the claim; measured, not invented
    assert result.verdict == "deviates" and float(result.measured) > 50.0
    assert "weights lenet5_untrained.pt" in result.note


def test_dataset_claims_are_counted_on_the_dataset(tmp_path: Path) -> None:
    voc = write_voc(tmp_path / "synth", year="2010", splits={"trainval": 12, "test": 4})
    paper = load_paper("detection_datasets")
    results = measure_paper_local(paper, ["dataset"], {"voc2010": str(voc)})
    classes = next(r for r in results if r.claim_id == "voc2010-classes")
    # the synthetic set has its own three classes: measured, and judged against VOC's 20
    assert classes.measured == "3" and classes.verdict == "deviates"
    others = [r for r in results if r.dataset != "voc2010" and r.kind == "dataset"]
    assert all(r.verdict == "not-run" for r in others)


def test_shared_ray_instance_reaches_the_command() -> None:
    code = "import os; print('RAY_ADDRESS=' + os.environ.get('RAY_ADDRESS', ''))"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run(
        [sys.executable, "-m", "repro.execution.shared", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(s for s in out.stdout.splitlines() if s.startswith("RAY_ADDRESS="))
    host, _, port = line.removeprefix("RAY_ADDRESS=").rpartition(":")
    assert host and port.isdigit()
    failing = subprocess.run(
        [sys.executable, "-m", "repro.execution.shared", sys.executable, "-c", "exit(3)"],
        capture_output=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    assert failing.returncode == 3


def test_protocol_evaluation_of_trained_weights_equals_the_training_evaluation(
    tmp_path: Path,
) -> None:
    """The suite re-evaluates trained weights by the recipe's protocol; on the same split with one
    centre crop it must give exactly the error training measured (the dataset normalizes once)."""
    recipe = DIGITS_RECIPE.model_copy(update={"epochs": 2})
    result = fit(
        FitConfig(
            recipe=recipe.model_dump(),
            data_root=None,
            dataset="digits",
            workers=0,
            seeds=[0],
            eval_split="test",
            run_name="protocol",
            storage_path=str(tmp_path),
            loader_workers=0,
            checkpoint_every_epoch=False,
            torch_threads=1,
        )
    )
    (seed,) = result.seeds
    again = evaluate_weights(recipe, "", seed["weights"], AccuracySettings(workers=0))
    assert again["top1_error"] == pytest.approx(seed["top1_error"], abs=1e-9)
    assert again["top5_error"] == pytest.approx(seed["top5_error"], abs=1e-9)


def test_batch_size_setting_replaces_the_recipe_batch_for_training_only(
    digits_paper, tmp_path: Path
) -> None:
    claims = [c for c in digits_paper.claims if c.id == "error"]
    recipe = digits_paper.recipe_for(claims[0])
    assert recipe is not None and recipe.batch_size != 8
    roots = {"digits": "digits"}
    (group,) = group_accuracy_claims(digits_paper, claims, AccuracySettings(batch_size=8), roots)
    assert group.recipe.batch_size == 8
    assert f"global batch 8 instead of the recipe's {recipe.batch_size}" in group.overrides
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    settings = AccuracySettings(batch_size=8, weights={"lenet5": str(weights)})
    (evaluated,) = group_accuracy_claims(digits_paper, claims, settings, roots)
    assert evaluated.recipe.batch_size == recipe.batch_size and evaluated.overrides == ""


def test_ablation_trains_each_variant_once_and_judges_paired_differences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AlexNet's overlapping-pooling claims: the plain alexnet recipe and the 2x2/2 variant each
    run once (the variant the plain claims train is reused), and the reduction is baseline minus
    model, seed by seed."""
    paper = load_paper("alexnet")
    ids = {"overlap-pool-top1", "overlap-pool-top5"}
    claims = [c for c in paper.claims if c.id in ids]
    plain = next(
        c
        for c in paper.claims
        if c.kind == "accuracy"
        and c.metric == "top5_error"
        and c.ensemble == 1
        and c.model is not None
        and c.model.name == "alexnet"
    )
    settings = AccuracySettings(workers=0, seeds=2)
    for claim in [*claims, plain]:
        assert reasons.not_run_reason(paper, claim, settings, {}) is None, claim.id
    groups = suite.group_accuracy_claims(paper, [plain, *claims], settings, {"imagenet": "/in"})
    assert len(groups) == 2
    ablation = next(g for g in groups if g.baseline is not None)
    assert {c.id for c in ablation.claims} == ids
    assert ablation.baseline.model_kwargs["pool_kernel"] == 2
    assert ablation.recipe == paper.recipe_for(plain)  # the plain recipe trains the model

    calls: list[dict] = []

    def fake_runs(group, _settings):
        calls.append(dict(group.recipe.model_kwargs))
        pool = group.recipe.model_kwargs.get("pool_kernel", 3)
        base = 40.0 if pool == 3 else 40.5  # overlapping pooling: lower error
        return [{"top1_error": base + s, "top5_error": base / 2 + s} for s in (0, 1)], "fake"

    monkeypatch.setattr(suite, "_runs", fake_runs)
    outcomes = [suite.measure_accuracy_group(g) for g in groups]  # sharing one run cache
    assert len(calls) == 2 and {c.get("pool_kernel", 3) for c in calls} == {2, 3}
    results = {r.claim_id: r for o in outcomes for r in o.results}
    assert float(results["overlap-pool-top1"].measured) == pytest.approx(0.5)
    assert float(results["overlap-pool-top5"].measured) == pytest.approx(0.25)
    assert "baseline alexnet(pool_kernel=2)" in results["overlap-pool-top1"].note


def test_an_ablation_without_a_baseline_says_so() -> None:
    paper = load_paper("yolo_v2")
    claim = next(c for c in paper.claims if c.id == "hires-classifier-map-gain")
    reason = not_run_reason(paper, claim, AccuracySettings(), {})
    assert reason is not None and "no `baseline:` variant" in reason


def test_baseline_is_only_for_comparison_metrics() -> None:
    with pytest.raises(ValueError, match="`baseline` belongs to accuracy claims"):
        Claim.model_validate(
            {**_claim(3.0, {"abs": 1.0}).model_dump(exclude={"id"}), "baseline": "lenet5"}
        )


def test_batch_norm_ablation_trains_yolo_with_and_without_bn(tmp_path: Path) -> None:
    paper = load_paper("yolo_v2")
    claim = next(c for c in paper.claims if c.id == "batchnorm-map-gain")
    roots = {"voc2007": str(tmp_path), "voc2012": str(tmp_path)}
    plan = plan_paper(paper, RunSettings(("accuracy",), roots, accuracy=AccuracySettings()))
    assert claim.id in {c.id for c in plan.of("accuracy")}
    (group,) = group_accuracy_claims(paper, [claim], AccuracySettings(), roots)
    assert group.baseline == paper.recipe_for(claim)  # YOLO as published
    assert group.recipe.model_kwargs == {"batch_norm": True, "dropout": 0.0}
    assert group.recipe.dropout == 0.0  # the recipe's 0.5 would put dropout back
    assert group.recipe.name != group.baseline.name  # separate runs and weights


def test_run_plan_lists_what_would_run_and_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in DATASETS:
        monkeypatch.delenv(f"REPRO_DATA_{name.upper()}", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {}}))
    assert main(["run", "alexnet", "--suite", "accuracy", "--plan", "--params", str(params)]) == 0
    out, err = capsys.readouterr()
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows and all(r[0] == "alexnet" and r[2] == "accuracy" for r in rows)
    assert all(r[3] == "not-run" and r[4].startswith("dataset not present") for r in rows)
    assert f"{len(rows)} not-run" in err

    params.write_text(yaml.safe_dump({"data": {"imagenet": str(tmp_path)}}))
    assert main(["run", "alexnet", "--suite", "accuracy", "--plan", "--params", str(params)]) == 0
    states = {r.split("\t")[1]: r.split("\t")[3] for r in capsys.readouterr()[0].splitlines()}
    assert states["overlap-pool-top1"] == "run"  # the ablation trains both variants


def _run_name(paper, tmp_path: Path, roots: dict[str, str] | None = None, **changes) -> str:
    claims = [c for c in paper.claims if c.id == "error"]
    settings = AccuracySettings(**{"workers": 1, "storage": str(tmp_path), **changes})
    (group,) = group_accuracy_claims(paper, claims, settings, roots or {"digits": "digits"})
    return suite._fit_options(group, settings)["run_name"]


def test_a_run_is_keyed_by_everything_that_changes_its_result(
    digits_paper, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = _run_name(digits_paper, tmp_path)
    assert (
        base.startswith("digits_test-lenet5-digits-") and _run_name(digits_paper, tmp_path) == base
    )
    changes = [
        {"workers": 2},
        {"workers": 0},
        {"epochs": 1},
        {"batch_size": 8},
        {"eval_limit": 10},
        {"seeds": 2},
        {"use_gpu": True},
    ]
    for change in changes:
        assert _run_name(digits_paper, tmp_path, **change) != base, change
    data = tmp_path / "data"
    data.mkdir()
    before = _run_name(digits_paper, tmp_path, {"digits": str(data)})
    (data / "extra.bin").write_bytes(b"1")
    assert _run_name(digits_paper, tmp_path, {"digits": str(data)}) != before  # other data
    monkeypatch.setattr(run_key, "source_digest", lambda: "other code")
    assert _run_name(digits_paper, tmp_path) != base  # other code
    recipe = digits_paper.recipes[0].model_dump()
    options = dict(workers=1, seeds=[0], epochs=None, eval_limit=None, precision="fp32",
                   use_gpu=False, roots={})  # fmt: skip
    one = run_key.key_hash(run_key.run_key(recipe, **options))
    other = {**recipe, "optimizer": {**recipe["optimizer"], "lr": 0.005}}
    assert run_key.key_hash(run_key.run_key(other, **options)) != one  # another recipe


def test_the_source_digest_is_of_the_package_sources() -> None:
    run_key.source_digest.cache_clear()
    digest = run_key.source_digest()
    assert len(digest) == 64 and run_key.source_digest() == digest


def test_other_settings_train_anew_the_same_settings_resume(
    digits_paper, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Changing what the result depends on trains a new run in its own folder (a result is
    never another run's); the same settings return the stored run without training."""
    storage = tmp_path / "runs"

    def error(**changes) -> tuple[float, str]:
        settings = AccuracySettings(workers=0, seeds=1, storage=str(storage), **changes)
        results = measure_paper_local(digits_paper, ["accuracy"], {}, accuracy=settings)
        (row,) = [r for r in results if r.claim_id == "error"]
        return float(row.measured), row.note

    one, note = error(epochs=1)
    assert "(1 epochs, 0 worker(s)" in note
    assert "seed 0 epoch 1/1" in capsys.readouterr().err  # trained, one line per epoch
    _, note = error(epochs=1, batch_size=8)
    assert "global batch 8" in note and "seed 0 epoch 1/1" in capsys.readouterr().err
    assert len(list(storage.iterdir())) == 2  # a folder of its own
    again, _ = error(epochs=1)
    assert again == one and "epoch 1/1" not in capsys.readouterr().err  # resumed: no training
    assert len(list(storage.iterdir())) == 2


def test_the_test_split_is_scored_once_where_training_scored_it(
    digits_paper, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = digits_paper.recipes[0]
    assert suite.loop_scored(recipe, "", AccuracySettings())
    assert not suite.loop_scored(recipe, "", AccuracySettings(eval_limit=50))
    ten = recipe.model_copy(
        update={"evaluation": recipe.evaluation.model_copy(update={"crops": 10})}
    )
    assert not suite.loop_scored(ten, "", AccuracySettings())

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the test split was scored twice")

    monkeypatch.setattr(suite, "evaluate_weights", no_second_pass)
    settings = AccuracySettings(workers=0, seeds=1, epochs=1, storage=str(tmp_path))
    results = measure_paper_local(digits_paper, ["accuracy"], {}, accuracy=settings)
    (row,) = [r for r in results if r.claim_id == "error"]
    assert row.verdict in ("reproduced", "deviates") and 0.0 <= float(row.measured) < 100.0


def test_training_runs_are_children_of_the_papers_run_in_mlflow(
    digits_paper, tmp_path: Path
) -> None:
    """`repro run` opens the paper's parent run before measuring; each seed's training run
    logs its per-epoch curve, dataset inputs and network under it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    accuracy = AccuracySettings(workers=0, seeds=1, epochs=2, storage=str(tmp_path / "runs"))
    settings = RunSettings(
        ("accuracy",), {}, tmp_path / "out", uri, use_ray=False, papers_dir=tmp_path,
        accuracy=accuracy,
    )  # fmt: skip
    (run,) = run_papers(["digits_test"], settings)
    (error,) = [r for r in run.results if r.claim_id == "error"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("repro/digits_test")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("repro.role") == "reproduction"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["verdicts.not-run"] == 1
    (child,) = [r for r in runs if r.data.tags.get("repro.kind") == "fit"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.run_name.endswith("-seed0") and child.info.status == "FINISHED"
    curve = client.get_metric_history(child.info.run_id, "top1_error")
    assert [m.step for m in curve] == [1, 2]
    assert curve[-1].value == pytest.approx(float(error.measured), abs=1e-3)
    assert {"loss", "lr", "images_per_s"} <= set(child.data.metrics)
    assert {d.dataset.name for d in child.inputs.dataset_inputs} == {"digits/train", "digits/test"}
