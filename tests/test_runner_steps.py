"""`repro run` as four steps, each called alone: plan (writes nothing), execute, write, log;
and the one settings object, resolved from flags over environment over params.yaml."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from repro import tracking
from repro.errors import ReproError
from repro.runner import (
    RunSettings,
    execute,
    log,
    paper_runs,
    plan_run,
    write,
)


def test_plan_checks_everything_and_writes_nothing(tiny_paper_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    settings = RunSettings(out_dir=out, papers_dir=tiny_paper_dir, use_ray=False)
    run = plan_run(["alpha", "beta"], settings)
    alpha = run.plans[0]
    assert [c.id for c in alpha.of("analytic")] == ["params", "shape"]
    assert [r.claim_id for r in alpha.not_run] == ["top5"]
    assert "dataset not present: imagenet" in alpha.not_run[0].note
    assert not out.exists()
    with pytest.raises(ReproError, match="file store"):
        plan_run(["alpha"], replace(settings, tracking_uri="file:///tmp/mlruns"))
    with pytest.raises(ReproError, match="unknown suite 'speedy'"):
        plan_run(["alpha"], replace(settings, suites=("speedy",)))
    with pytest.raises(ReproError, match="cannot reach the Ray cluster"):
        plan_run(["alpha"], replace(settings, use_ray=True, ray_address="127.0.0.1:1"))
    assert not out.exists()


def test_execute_write_log_alone(tiny_paper_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = RunSettings(out_dir=out, papers_dir=tiny_paper_dir, use_ray=False, tracking_uri=uri)
    run = plan_run(["alpha"], settings)
    execution = execute(run)
    assert execution.ray_info["ray_address"] == "in-process (no Ray)"
    (outcome,) = execution.outcomes
    assert {r.claim_id: r.verdict for r in outcome.results} == {
        "params": "reproduced",
        "shape": "reproduced",
    }
    runs = paper_runs(run, execution, started=0.0)
    write(runs, out)
    with (out / "alpha.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["claim_id"] for r in rows] == ["params", "shape", "top5"]  # the file's order
    assert not list(out.glob("*.tmp"))  # written through a temporary file, then renamed
    log(runs, uri)
    logged = tracking.load_results(uri, ["alpha"])
    assert sorted(r["claim_id"] for r in logged) == ["params", "shape", "top5"]
    assert "mlflow_session" in runs[0].meta


def test_settings_resolve_flag_over_environment_over_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "suites: [analytic, dataset]\n"
        "ray: {address: 'params:6379'}\n"
        "mlflow: {tracking_uri: 'sqlite:///params.db'}\n"
        "data: {voc2007: /data/voc}\n"
        "accuracy: {seeds: 3}\n"
    )
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    s = RunSettings.resolve(params)
    assert s.suites == ("analytic", "dataset") and s.ray_address == "params:6379"
    assert s.tracking_uri == "sqlite:///env.db"  # the environment over params.yaml
    fashion = "/usr/share/datasets/fashion-mnist"  # the one root with a default (Debian's)
    assert s.data_roots == {"voc2007": "/data/voc", "fashion_mnist": fashion}
    assert s.accuracy is not None
    assert s.accuracy.seeds == 3 and s.speed is None
    s = RunSettings.resolve(
        params, suites=["speed"], tracking_uri="sqlite:///flag.db", ray_address="flag:1", seeds=2
    )
    assert s.suites == ("speed",) and s.tracking_uri == "sqlite:///flag.db"
    assert s.ray_address == "flag:1" and s.speed is not None and s.accuracy is None
    s = RunSettings.resolve(params, no_mlflow=True, no_ray=True, seeds=2)
    assert s.tracking_uri is None and s.ray_address is None and not s.use_ray
    assert s.accuracy is not None and s.accuracy.seeds == 2
    with pytest.raises(
        ReproError, match="--seeds: `accuracy.seeds` should be greater than or equal to 1"
    ):
        RunSettings.resolve(params, seeds=-1)
