"""The accuracy stage (`dvc repro accuracy`, pipelines/accuracy.py): it keeps the committed
Fashion-MNIST reproduction unless params.yaml asks to retrain, the report renders the committed
rows in place of the measure stage's not-run ones, `repro run --claims` selects claims, and
`repro train` / `repro eval classifier` read MNIST-format folders."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from pipelines import accuracy as stage_cli
from repro.cli import main
from repro.config import AccuracySettings, AccuracyStageSettings, parse_settings
from repro.data import mnist
from repro.data.synth import write_mnist
from repro.errors import ReproError
from repro.files import write_csv
from repro.models import build_model
from repro.report import write_report
from repro.report.hardware import read_runs
from repro.runner import stage
from repro.runner.plan import plan_run
from repro.runner.settings import RunSettings
from repro.runner.write import CURVE_COLUMNS
from repro.suites.accuracy import run_key
from repro.suites.stages import results_folder
from repro.verdicts import RESULT_COLUMNS

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "benchmarks" / "accuracy_claims"


def test_settings_resolve_from_params_env_and_flag() -> None:
    def of(text: str, env: dict[str, str], retrain: str | None = None) -> AccuracyStageSettings:
        return parse_settings(text, env=env, retrain=retrain).accuracy_stage

    assert of("", {}) == AccuracyStageSettings(retrain="never", papers=("fashion_mnist",))
    assert of("accuracy_stage: {retrain: true}", {}).retrain == "always"
    env = {"REPRO_RETRAIN_ACCURACY": "always"}
    assert of("accuracy_stage: {retrain: never}", env).retrain == "always"
    assert of("", env, retrain="never").retrain == "never"
    with pytest.raises(ReproError, match="REPRO_RETRAIN_ACCURACY: `accuracy_stage.retrain`"):
        of("", {"REPRO_RETRAIN_ACCURACY": "sometimes"})
    never = AccuracyStageSettings()
    assert not never.decide(True)[0] and "accuracy_stage.retrain is never" in never.decide(True)[1]
    auto = AccuracyStageSettings(retrain="auto")
    assert auto.decide(True)[0] and not auto.decide(False)[0]
    assert "REPRO_RETRAIN_ACCURACY=always" in auto.decide(False)[1]


def _params(tmp_path: Path, **section: object) -> Path:
    path = tmp_path / "params.yaml"
    out = str(tmp_path / "accuracy_claims")
    path.write_text(yaml.safe_dump({"accuracy_stage": {"out": out, **section}}))
    return path


def test_never_keeps_the_committed_results(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("REPRO_RETRAIN_ACCURACY", raising=False)
    root = tmp_path / "accuracy_claims"
    shutil.copytree(COMMITTED, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert stage_cli.main(["--params", str(_params(tmp_path)), "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert "accuracy: not retrained: accuracy_stage.retrain is never" in out
    assert all(p.name in out for p in root.iterdir())  # names the hardware it keeps
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_always_trains_the_papers_into_this_machine_s_folder(tmp_path: Path, monkeypatch) -> None:
    seen = {}

    def fake_run(papers, settings):  # noqa: ANN001, ANN202 - the runner's signature
        seen.update(papers=papers, settings=settings)
        return []

    monkeypatch.setattr(stage, "run_papers", fake_run)
    params = _params(tmp_path, retrain="always")
    assert stage_cli.main(["--params", str(params), "--no-mlflow", "--no-ray"]) == 0
    settings = seen["settings"]
    assert seen["papers"] == ["fashion_mnist"] and settings.suites == ("accuracy",)
    assert settings.out_dir == results_folder(tmp_path / "accuracy_claims", "cpu")
    assert settings.accuracy_settings.use_gpu is torch.cuda.is_available()


def test_the_committed_reproduction_holds_a_reproduced_claim_and_its_curve() -> None:
    (run,) = [r for r in read_runs(COMMITTED, "accuracy") if r.label.startswith("cpu")]
    verdicts = {r["claim_id"]: r["verdict"] for r in run.rows}
    assert "reproduced" in verdicts.values(), verdicts
    # every accuracy claim of the paper is there: trained, or not-run with the reason
    assert set(verdicts) >= {"tf-cnn-accuracy-cpu-budget", "lenet5-2conv-accuracy"}
    assert all(r["note"] for r in run.rows if r["verdict"] == "not-run")
    with (Path(run.folder) / "fashion_mnist.curve.csv").open(newline="") as fh:
        curve = list(csv.DictReader(fh))
    for recipe in {r["recipe"] for r in curve}:
        epochs = [int(r["epoch"]) for r in curve if r["recipe"] == recipe]
        assert epochs == list(range(1, len(epochs) + 1)), recipe
    trained = [r for r in run.rows if r["verdict"] in ("reproduced", "deviates")]
    recipes = {r["recipe"] for r in curve}
    assert len(recipes) == len(trained)


def _row(**values: str) -> dict[str, str]:
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(table="T", row="r", metric="top1_error", unit="%", **values)
    return row


def test_the_report_renders_committed_accuracy_rows(tmp_path: Path) -> None:
    folder = tmp_path / "accuracy_claims" / "cpu-test_fp32_torch2"
    folder.mkdir(parents=True)
    committed = _row(paper="p", claim_id="acc", kind="accuracy", claimed="8.4", measured="8.1",
                     verdict="reproduced", note="trained by recipe r")  # fmt: skip
    with (folder / "p.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        writer.writerow(committed)
    env = {"device": "cpu", "cpu": "Test CPU", "precision": "fp32", "torch": "2.14.1"}
    (folder / "p.json").write_text(json.dumps({"environment": env, "finished": "2026-12-07"}))
    curve = [{"paper": "p", "recipe": "r", "seed": 0, "epoch": e, "loss": 1 / e,
              "top1_error": 20 - e} for e in (1, 2, 3)]  # fmt: skip
    write_csv(folder / "p.curve.csv", CURVE_COLUMNS, curve)
    measured = [
        _row(paper="p", claim_id="acc", kind="accuracy", claimed="8.4", verdict="not-run",
             note="suite not selected"),
        _row(paper="p", claim_id="n", kind="dataset", claimed="10", measured="10",
             verdict="reproduced"),
    ]  # fmt: skip
    paths = write_report(measured, [], tmp_path / "report", speed_dir=None,
                         accuracy_dir=tmp_path / "accuracy_claims", bench_dir=None)  # fmt: skip
    with paths["csv"].open(newline="") as fh:
        rows = {r["claim_id"]: r for r in csv.DictReader(fh)}
    assert rows["acc"]["verdict"] == "reproduced" and rows["acc"]["measured"] == "8.1"
    assert rows["acc"]["hardware"] == "cpu (Test CPU), fp32, torch 2.14.1"
    assert rows["n"]["verdict"] == "reproduced"  # other kinds stay as measured
    # the committed curve is drawn in the paper's section of both renderings
    chart = paths["charts"] / "training-p-cpu-test_fp32_torch2.svg"
    assert chart.is_file() and "r, seed 0: top1_error 19 at epoch 1, 17 at 3" in chart.read_text()
    markdown = paths["markdown"].read_text()
    assert markdown.index("## p") < markdown.index("training-p-cpu-test_fp32_torch2.svg")
    assert "on cpu (Test CPU), fp32, torch 2.14.1" in paths["html"].read_text()


def test_claims_selects_and_names_an_unknown_id(tmp_path: Path) -> None:
    settings = RunSettings(
        suites=("analytic",), out_dir=None, use_ray=False, claims=("params-60k",)
    )
    (plan,) = plan_run(["lenet"], settings).plans
    assert [c.id for c in plan.of("analytic")] == ["params-60k"]
    assert any("not selected (--claims params-60k)" in r.note for r in plan.not_run)
    with pytest.raises(ReproError, match="--claims: no claim 'nope' in lenet") as err:
        plan_run(["lenet"], RunSettings(suites=("analytic",), out_dir=None, claims=("nope",)))
    assert "repro papers lenet --claims" in err.value.fix


def test_an_mnist_format_folder_is_told_apart_by_content(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    raw = write_mnist(tmp_path / "tv") / "MNIST" / "raw"
    shutil.copytree(raw, flat)
    assert mnist.identify(tmp_path / "tv") == "mnist" and mnist.identify(flat) == "mnist"
    assert mnist.identify(tmp_path / "empty-or-not-there") is None
    real = Path("/usr/share/datasets/fashion-mnist")
    if real.is_dir():
        assert mnist.identify(real) == "fashion_mnist"


def test_train_and_eval_classifier_read_an_mnist_format_folder(tmp_path: Path, capsys) -> None:
    root = write_mnist(tmp_path / "data", {"train": 96, "test": 40})
    args = ["train", "lenet5", "--data", str(root), "--workers", "0", "--steps", "3",
            "--batch-size", "16", "--no-mlflow", "--storage", str(tmp_path / "runs")]  # fmt: skip
    assert main(args) == 0
    assert "images/s" in capsys.readouterr().out
    weights = tmp_path / "lenet5.pt"
    torch.save(build_model("lenet5").state_dict(), weights)
    base = ["eval", "classifier", "lenet5", "--weights", str(weights), "--data", str(root)]
    assert main([*base, "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["dataset"], out["split"], out["images"], out["crop"]) == ("mnist", "test", 40, 32)
    assert 0 <= out["top1_error"] <= 100
    assert main([*base, "--crops", "10"]) == 2
    assert "--crops 10, --resize and --labels do not apply" in capsys.readouterr().err


def test_the_run_key_sees_an_mnist_format_set_s_content(tmp_path: Path) -> None:
    root = write_mnist(tmp_path / "data", {"train": 20, "test": 10})
    before = run_key.data_fingerprint("mnist", str(root))
    # the same files, sizes and times, one label changed: another run
    labels = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    info = labels.stat()
    data = bytearray(labels.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    labels.write_bytes(bytes(data))
    os.utime(labels, ns=(info.st_atime_ns, info.st_mtime_ns))
    after = run_key.data_fingerprint("mnist", str(root))
    assert before["entries"] == after["entries"] and before["content"] != after["content"]


def test_weights_for_an_unregistered_model_are_named(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    accuracy = AccuracySettings(weights={"resnet5O": str(weights)})
    settings = RunSettings(suites=("accuracy",), out_dir=None, use_ray=False, accuracy=accuracy)
    with pytest.raises(ReproError, match="weights for 'resnet5O'.*unknown model") as err:
        plan_run(["lenet"], settings)
    assert "repro models" in err.value.fix
