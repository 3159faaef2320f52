"""The epoch lines of a recipe training on the terminal: rank 0 appends them to the run's
epochs.log, the driver prints the new ones, in this process and from Ray Train workers (whose
own output Ray does not forward here)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
import ray

from repro.demos.digits import DIGITS_RECIPE
from repro.train.distributed import follow_lines
from repro.train.fit import FitConfig, fit


def test_new_whole_lines_are_followed_and_old_ones_not_repeated(tmp_path: Path) -> None:
    path, out = tmp_path / "epochs.log", io.StringIO()
    path.write_text("an earlier run's line\n")

    def write() -> None:
        with open(path, "a") as f:
            f.write("epoch 1\n")
            f.flush()
            time.sleep(0.05)
            f.write("epoch 2\nhalf a li")

    with follow_lines(path, out, every_s=0.01):
        writer = threading.Thread(target=write)
        writer.start()
        writer.join()
        time.sleep(0.05)
        assert out.getvalue().startswith("epoch 1\n")  # while the run goes on
    assert out.getvalue() == "epoch 1\nepoch 2\n"


def test_a_missing_log_prints_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    with follow_lines(tmp_path / "none" / "epochs.log", out, every_s=0.01):
        time.sleep(0.03)
    assert out.getvalue() == ""


@pytest.mark.slow
def test_ray_workers_epoch_lines_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ray.shutdown()
    try:
        config = FitConfig(
            recipe=DIGITS_RECIPE.model_copy(update={"epochs": 2}).model_dump(),
            workers=2,
            max_steps_per_epoch=4,
            loader_workers=0,
            storage_path=str(tmp_path / "runs"),
            run_name="ray-lines",
        )
        fit(config)
    finally:
        ray.shutdown()
    lines = [s for s in capsys.readouterr().err.splitlines() if s.startswith("ray-lines seed")]
    assert [s.split(":")[0] for s in lines] == [
        "ray-lines seed 0 epoch 1/2",
        "ray-lines seed 0 epoch 2/2",
    ]  # rank 0's only: one line per epoch
