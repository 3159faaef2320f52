"""The DVC speed stage: re-time or keep the committed results, and where the results go."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from pipelines import speed as stage_cli
from repro.config import SPEED_PAPERS, SpeedStageSettings, parse_settings
from repro.errors import ReproError
from repro.report.hardware import read_runs
from repro.suites.stages import committed_folders, results_folder

COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "speed_claims"
TINY = {
    "proposals": 12, "image_height": 72, "image_width": 96, "scale": 64, "max_size": 100,
    "rcnn_batch": 6, "warmup": 0, "repeats": 1, "min_repeat_s": 0.001, "budget_s": 20,
}  # fmt: skip


def _stage(text: str, env: dict[str, str], retime: str | None = None) -> SpeedStageSettings:
    return parse_settings(text, env=env, retime=retime).speed_stage


def test_settings_resolve_from_params_env_and_flag() -> None:
    assert _stage("", {}) == SpeedStageSettings(retime="auto", papers=SPEED_PAPERS)
    assert _stage("speed_stage: {retime: true}", {}).retime == "always"
    assert _stage("speed_stage: {retime: false}", {}).retime == "never"
    env = {"REPRO_RETIME_SPEED": "always"}
    assert _stage("speed_stage: {retime: never}", env).retime == "always"
    assert _stage("", env, retime="never").retime == "never"
    with pytest.raises(ReproError, match="REPRO_RETIME_SPEED: `speed_stage.retime` should be"):
        _stage("", {"REPRO_RETIME_SPEED": "sometimes"})
    with pytest.raises(ReproError, match="unknown key `speed_stage.retimes`") as err:
        _stage("speed_stage: {retimes: auto}", {})
    assert "did you mean `retime`?" in err.value.fix
    with pytest.raises(ReproError, match="`speed_stage.papers` expects a list"):
        _stage("speed_stage: {papers: rcnn}", {})


def test_auto_retimes_only_with_a_gpu() -> None:
    auto = SpeedStageSettings()
    assert auto.decide(True)[0] and not auto.decide(False)[0]
    assert "no GPU" in auto.decide(False)[1]
    always, never = SpeedStageSettings(retime="always"), SpeedStageSettings(retime="never")
    assert always.decide(False)[0] and not never.decide(True)[0]


def test_results_folder_names_the_environment() -> None:
    folder = results_folder("root", "cpu")
    version = torch.__version__.split("+")[0]
    assert folder.parent == Path("root") and folder.name.startswith("cpu-")
    assert folder.name.endswith(f"_fp32_torch{version}") and "+" not in folder.name
    # the committed CPU folder is named the same way
    if "cpu-amd-epyc" in folder.name:
        assert folder.name in committed_folders(COMMITTED)


def _params(tmp_path: Path, **stage: object) -> Path:
    params = {"speed_stage": {"out": str(tmp_path / "speed_claims"), **stage}, "speed": TINY}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto re-times where there is a GPU")
def test_cpu_keeps_the_committed_results(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("REPRO_RETIME_SPEED", raising=False)
    root = tmp_path / "speed_claims"
    shutil.copytree(COMMITTED, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert stage_cli.main(["--params", str(_params(tmp_path)), "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert "not re-timed" in out and "no GPU" in out and committed_folders(root)[0] in out
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_always_retimes_into_the_environment_folder(tmp_path: Path, capsys) -> None:
    params = _params(tmp_path, retime="always", papers=["yolo_v1"])
    assert stage_cli.main(["--params", str(params), "--no-mlflow", "--no-ray"]) == 0
    folder = results_folder(tmp_path / "speed_claims", "cpu")
    assert str(folder) in capsys.readouterr().out
    with (folder / "yolo_v1.csv").open() as fh:
        speed = [r for r in csv.DictReader(fh) if r["kind"] == "speed"]
    timed = [r for r in speed if r["verdict"] != "not-run"]
    assert timed and all(float(r["measured"]) > 0 for r in timed)
    (run,) = read_runs(tmp_path / "speed_claims")
    assert run.folder == str(folder) and len(run.rows) == len(speed)
