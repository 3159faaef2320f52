"""The environment behind every result (repro.environment) and `repro env`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from repro import environment, tracking
from repro.cli import main
from repro.environment import ENV_KEYS, collect, gather, git_state


class FakeNvml:
    """Two GPUs of one kind behind pynvml's functions, as an H100 node reports them."""

    def __init__(self, names: list[str]) -> None:
        self.names, self.open = names, False

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        self.open = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.open = False

    def nvmlSystemGetDriverVersion(self) -> bytes:  # noqa: N802
        return b"580.82.07"

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return self.names[handle]


class BrokenNvml(FakeNvml):
    def nvmlInit(self) -> None:  # noqa: N802
        raise OSError("NVML Shared Library Not Found")


def test_keys_in_order_and_versions_of_this_process() -> None:
    env = collect()
    assert tuple(env) == ENV_KEYS
    assert env["torch"] == torch.__version__
    assert env["host_cpus"].isdigit() and int(env["host_cpus"]) >= 1
    assert env["mlflow"] != "not installed" and env["ray"] != "not installed"


def test_gathered_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    environment._gathered_once.cache_clear()
    real = environment.gather
    monkeypatch.setattr(environment, "gather", lambda: calls.append(1) or real())
    try:
        first = collect()
        first["device"] = "changed by a caller"
        assert collect() == {k: v for k, v in first.items() if k != "device"}
        assert len(calls) == 1
    finally:
        environment._gathered_once.cache_clear()


def test_gpus_and_driver_from_nvml() -> None:
    nvml = FakeNvml(["NVIDIA H100 80GB HBM3"] * 2)
    env = gather(nvml=nvml)
    assert env["gpu"] == "2x NVIDIA H100 80GB HBM3" and env["driver"] == "580.82.07"
    assert not nvml.open  # shut down again
    mixed = gather(nvml=FakeNvml(["NVIDIA A100-SXM4-40GB", "NVIDIA L4"]))
    assert mixed["gpu"] == "NVIDIA A100-SXM4-40GB, NVIDIA L4"


def test_no_driver_is_said_not_raised() -> None:
    env = gather(nvml=BrokenNvml([]))
    if not torch.cuda.is_available():
        assert (env["gpu"], env["driver"]) == ("none", "none")
    else:
        assert env["driver"].startswith("unknown")


def test_git_commit_and_dirty_flag(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
            cwd=tmp_path, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip

    assert git_state(tmp_path) == ("unknown", "unknown")  # not a checkout
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "results.csv").write_text("old\n")
    (tmp_path / "dvc.lock").write_text("old\n")
    git("add", "a.txt", "reports", "dvc.lock")
    git("commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    assert git_state(tmp_path) == (head, "false")
    (tmp_path / "untracked.txt").write_text("outputs are not changes\n")
    assert git_state(tmp_path) == (head, "false")
    # what the pipeline writes into tracked files is a result, not a change to the source
    (tmp_path / "reports" / "results.csv").write_text("new\n")
    (tmp_path / "dvc.lock").write_text("new\n")
    assert git_state(tmp_path) == (head, "false")
    (tmp_path / "a.txt").write_text("2\n")
    assert git_state(tmp_path) == (head, "true")


def test_repro_env_prints_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(ENV_KEYS)
    assert main(["env", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == collect()


def test_every_mlflow_run_carries_the_environment(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rid = tracking.log_demo(uri, "env-check", {"acc": 0.5}, {"epochs": 1}, [])
    bench = tracking.log_benchmark(uri, {"model": "lenet5", "status": "ok", "images_per_s": 1.0})
    client = MlflowClient(uri)
    env = collect()
    for run_id in (rid, bench):
        tags = client.get_run(run_id).data.tags
        assert {k: tags.get(f"env.{k}") for k in ENV_KEYS} == env
