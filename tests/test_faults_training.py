"""Faults in training: a worker that dies at a random step, and a newest checkpoint that is
truncated, corrupt or carries code. Either way no step is lost or logged twice to MLflow."""

from __future__ import annotations

import json
import os
import pickle
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from repro.cli import main
from repro.errors import ReproError
from repro.execution.state import shutdown
from repro.execution.tasks import init_ray
from repro.tracking import training
from repro.train.checkpoint import problem
from repro.train.config import TrainConfig
from repro.train.distributed import run_training

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _local(tmp_path: Path, **kw: object) -> TrainConfig:
    base = dict(
        model="lenet5", batch_size=8, workers=0, checkpoint_every=2,
        storage_path=str(tmp_path / "runs"),
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def _mlflow_steps(uri: str, name: str, total: int) -> tuple[int, int]:
    """(lost, duplicated) steps of training run ``name``'s loss history, against 0..total-1."""
    run = training.find_train_run(uri, name)
    assert run is not None

    steps = [m.step for m in MlflowClient(uri).get_metric_history(run["run_id"], "loss")]
    want = set(range(total))
    return len(want - set(steps)), len(steps) - len(set(steps)) + len(set(steps) - want)


class RunsCode:
    """A pickle that would touch a file when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _truncate(path: Path, _: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _garbage(path: Path, _: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


def _code(path: Path, marker: Path) -> None:
    with path.open("wb") as fh:
        pickle.dump({"model": RunsCode(marker)}, fh)


def _trainer_json(path: Path, _: Path) -> None:
    (path.parent / "trainer.json").write_text('{"next_step": 4, "hist')


def _missing(path: Path, _: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    "damage",
    [_truncate, _garbage, _code, _trainer_json, _missing],
    ids=["truncated", "random-bytes", "pickle-runs-code", "trainer-json-cut", "model-missing"],
)
def test_corrupt_newest_checkpoint_resumes_from_the_one_before(
    tmp_path: Path, uri: str, damage, fault_record, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"corrupt-{damage.__name__.strip('_')}"
    straight = run_training(_local(tmp_path, steps=6, run_name=f"{name}-straight"))
    run_training(_local(tmp_path, steps=4, run_name=name, tracking_uri=uri))
    marker = tmp_path / "code-ran"
    newest = tmp_path / "runs" / name / "checkpoint_0000004"
    damage(newest / "model.pt", marker)
    began = time.perf_counter()
    resumed = run_training(_local(tmp_path, steps=6, run_name=name, tracking_uri=uri))
    recovery = time.perf_counter() - began
    lost, dup = _mlflow_steps(uri, name, 6)
    same = [e["loss"] for e in resumed.history] == pytest.approx(
        [e["loss"] for e in straight.history], rel=1e-6
    )
    ok = resumed.resumed_from_step == 2 and same and not marker.exists()
    fault_record("newest checkpoint corrupt", ok and not lost and not dup, lost, dup, recovery)
    assert not marker.exists()  # weights_only: the pickle's code never ran
    assert resumed.resumed_from_step == 2
    assert len(resumed.resume_skipped) == 1 and "checkpoint_0000004" in resumed.resume_skipped[0]
    assert "resuming from checkpoint_0000002" in capsys.readouterr().err
    assert same
    assert (lost, dup) == (0, 0)


def test_every_checkpoint_unreadable_is_a_named_error(tmp_path: Path) -> None:
    run_training(_local(tmp_path, steps=4, run_name="all-bad"))
    for ckpt in (tmp_path / "runs" / "all-bad").glob("checkpoint_*"):
        _garbage(ckpt / "model.pt", tmp_path)
    with pytest.raises(ReproError, match="no checkpoint of .* reads back") as err:
        run_training(_local(tmp_path, steps=6, run_name="all-bad"))
    assert "checkpoint_0000002: model.pt" in err.value.cause and "delete" in err.value.fix


def test_problem_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "trainer.json").write_text(json.dumps({"next_step": 2}))
    torch.save({"model": {}}, tmp_path / "model.pt")
    assert problem(tmp_path) is None
    (tmp_path / "rng_rank0.pt").write_bytes(b"\x80\x04junk")
    assert (problem(tmp_path) or "").startswith("rng_rank0.pt: ")


# --- a Ray Train worker dies at a seeded random step ----------------------------------------


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    init_ray(num_cpus=2)
    yield
    shutdown()


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("seed", range(5))
def test_worker_killed_at_a_random_step(
    tmp_path: Path, uri: str, ray_local: None, fault_record, seed: int
) -> None:
    """`repro train` on 2 DDP workers with checkpoints every 2 steps; rank 1 dies (os._exit, no
    clean-up) at a seeded step. Every step of 0..9 in the MLflow history exactly once."""
    steps = 10
    fault = random.Random(seed).randrange(1, steps)
    name = f"random-kill-{seed}"
    began = time.perf_counter()
    out = tmp_path / "result.json"
    code = main(
        [
            "train", "lenet5", "--workers", "2", "--batch-size", "8", "--steps", str(steps),
            "--checkpoint-every", "2", "--max-failures", "1", "--storage", str(tmp_path / "runs"),
            "--name", name, "--tracking-uri", uri, "--inject-fault-at", str(fault),
            "--json", str(out),
        ]
    )  # fmt: skip
    recovery = time.perf_counter() - began
    result = json.loads(out.read_text()) if out.exists() else {}
    lost, dup = _mlflow_steps(uri, name, steps)
    history = [e["step"] for e in result.get("history", [])]
    ok = code == 0 and result.get("restarts") == 1 and history == list(range(steps))
    fault_record("training worker killed at a random step", ok and not lost and not dup, lost,
                 dup, recovery)  # fmt: skip
    assert code == 0 and result["restarts"] == 1
    assert result["resumed_from_step"] == ((fault - fault % 2) or None)  # None: no checkpoint yet
    assert history == list(range(steps))
    assert (lost, dup) == (0, 0)
