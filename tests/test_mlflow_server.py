"""MLflow as its users see it, against a real `mlflow server` over HTTP: `repro run lenet` and a
short digits demo, read back through the client. The experiment opens on its runs, every run says
what produced it, the reproduction is one parent run with its model runs as children, claimed /
measured / ratio are metrics, training runs have per-epoch curves, system metrics, a dataset
input and a model that loads back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from repro.tracking import spool
from repro.tracking.report import load_results_of
from repro.verdicts import RESULT_COLUMNS, GroupOutcome, Result
from tests.servers import MlflowServer

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[1]
REPRO = Path(sys.executable).with_name("repro")


def _git_head() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    s.start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def logged(server: MlflowServer, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out")
    for cmd in (
        ["run", "lenet", "--no-ray", "--out", str(out / "measurements")],
        ["demo", "digits", "--workers", "0", "--seeds", "1", "--epochs", "3",
         "--out", str(out / "demos")],
    ):  # fmt: skip
        done = subprocess.run(
            [str(REPRO), *cmd, "--tracking-uri", server.uri],
            cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    return MlflowClient(tracking_uri=server.uri)


def _runs(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, experiment
    return exp, client.search_runs([exp.experiment_id], max_results=500)


def test_experiments_open_on_their_runs(logged) -> None:
    for name in ("repro/lenet", "repro/demos"):
        exp = logged.get_experiment_by_name(name)
        assert exp.tags.get("mlflow.experimentKind") == "custom_model_development", name


def test_every_run_names_its_source_commit_and_user(logged) -> None:
    head = _git_head()
    for name in ("repro/lenet", "repro/demos"):
        _, runs = _runs(logged, name)
        assert runs
        for run in runs:
            tags = run.data.tags
            assert tags["mlflow.source.name"] in ("repro run", "repro demo"), tags
            assert tags["mlflow.source.type"] == "LOCAL"
            assert tags["mlflow.source.git.commit"] == head
            assert tags["mlflow.user"] and tags["repro.git_dirty"] in ("true", "false")
            assert tags["env.torch"]  # the environment, gathered once, still on every run


def test_one_reproduction_is_one_parent_run(logged) -> None:
    _, runs = _runs(logged, "repro/lenet")
    parents = [r for r in runs if r.data.tags.get("repro.role") == "reproduction"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert children and len(children) == len(runs) - 1
    assert parent.data.params["command"].startswith("repro run lenet")
    counts = {k.split(".", 1)[1]: v for k, v in parent.data.metrics.items() if "verdicts." in k}
    rows = sum(len([t for t in c.data.tags if t.endswith(".verdict")]) for c in children)
    assert sum(counts.values()) == rows and counts["reproduced"] > 0
    # the parent brackets the reproduction (process start to the end of logging), each child
    # its measurement
    assert parent.info.end_time - parent.info.start_time > 1000
    for child in children:
        assert parent.info.start_time <= child.info.start_time <= child.info.end_time
        assert child.info.end_time <= parent.info.end_time


def test_claimed_measured_and_ratio_are_metrics(logged) -> None:
    _, runs = _runs(logged, "repro/lenet")
    lenet = next(r for r in runs if r.data.tags.get("model_key") == "lenet5")
    m = lenet.data.metrics
    assert m["params-60k.claimed"] == 60
    assert m["params-60k.ratio"] == pytest.approx(m["params-60k.measured"] / 60)
    assert lenet.data.tags["claim.params-60k.unit"] == "K"
    assert lenet.data.tags["claim.params-60k.verdict"] == "reproduced"


def test_training_runs_have_curves_a_dataset_and_a_model(logged, server) -> None:
    _, runs = _runs(logged, "repro/demos")
    (demo,) = [r for r in runs if r.data.tags.get("repro.demo") == "digits"]
    (run,) = [r for r in runs if r.data.tags.get("repro.kind") == "fit"]
    assert run.data.tags["mlflow.parentRunId"] == demo.info.run_id  # the demo holds its fit
    assert demo.info.status == "FINISHED" and "test_error_w0_mean" in demo.data.metrics
    rid = run.info.run_id
    for key in ("loss", "lr", "top1_error", "images_per_s"):
        history = logged.get_metric_history(rid, key)
        assert [h.step for h in sorted(history, key=lambda h: h.step)] == [1, 2, 3], key
    cpu = logged.get_metric_history(rid, "system/cpu_utilization_percentage")
    memory = logged.get_metric_history(rid, "system/system_memory_usage_megabytes")
    assert len(cpu) >= 2 and len(memory) == len(cpu)  # sampled from the fit's start to its end
    assert sorted(m.step for m in cpu) == list(range(len(cpu)))
    inputs = {i.tags[0].value: i.dataset for i in logged.get_run(rid).inputs.dataset_inputs}
    assert set(inputs) == {"train", "eval"}
    assert inputs["train"].name == "digits/train" and len(inputs["train"].digest) == 16
    mlflow.set_tracking_uri(server.uri)
    model = mlflow.pytorch.load_model(f"runs:/{rid}/model")
    out = model(torch.rand(2, 1, 32, 32))
    assert tuple(out.shape) == (2, 10)


def test_report_and_compare_select_a_reproduction_by_its_parent(logged, server, tmp_path) -> None:
    _, runs = _runs(logged, "repro/lenet")
    parent = next(r for r in runs if r.data.tags.get("repro.role") == "reproduction")
    rows = load_results_of(server.uri, parent.info.run_id)
    assert rows and {r["paper"] for r in rows} == {"lenet"}
    assert rows == load_results_of(server.uri, parent.data.tags["repro.session"])


def test_a_replayed_session_keeps_the_command_that_measured_it(tmp_path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    row = dict.fromkeys(RESULT_COLUMNS, "") | {"paper": "lenet", "claim_id": "p", "seconds": 0.0}
    rows = [Result(**row | {"claimed": "1", "measured": "1", "verdict": "reproduced"})]
    group = GroupOutcome("lenet5", "lenet5", {}, [], {}, rows, paper="lenet", started=1.7e9)
    monkeypatch.setattr(sys, "argv", ["/x/bin/repro", "run", "lenet"])
    record = group.record()
    spool.save_paper(uri, "lenet", [record], {}, "abc123", "down", tmp_path / "spool", 1.7e9 - 5)
    assert GroupOutcome.from_record(record) == group
    monkeypatch.setattr(sys, "argv", ["/x/bin/repro", "sync"])
    assert spool.replay(directory=tmp_path / "spool").replayed == ["lenet (abc123)"]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("repro/lenet")
    (parent,) = [r for r in client.search_runs([exp.experiment_id])
                 if r.data.tags.get("repro.role") == "reproduction"]  # fmt: skip
    assert parent.data.params["command"] == "repro run lenet"
    assert parent.info.run_name == "lenet (repro run, abc123)"
    assert parent.info.start_time == int((1.7e9 - 5) * 1000)
