"""benchmarks/gpu/run.sh --dry-run: every step of the GPU script on the CPU at tiny sizes, as the
bare GPU machine would run it (no Ray, MLflow or DVC importable), so the script cannot rot
between loans of a GPU."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = ["bench-infer", "bench-train", "bench-train-auto", "bench-train-compile", "compare-timm",
         "speed-claims", "jpeg-decode", "ddp-one"]  # fmt: skip
# What the GPU machine lacks: importing any of these there fails, so here it must not happen.
BARE = """import sys
for name in ("ray", "mlflow", "dvc"):
    sys.modules[name] = None
"""


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    site = tmp_path_factory.mktemp("bare")
    (site / "sitecustomize.py").write_text(BARE)
    out = tmp_path_factory.mktemp("gpu")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(site),
           "TIMM_BENCHMARK": str(site / "absent.py")}  # fmt: skip
    done = subprocess.run([str(REPO / "benchmarks" / "gpu" / "run.sh"), str(out), "--dry-run"],
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    return out, done


def test_every_step_runs_and_is_recorded(dry_run) -> None:
    out, done = dry_run
    steps = {r["step"]: r for r in rows(out / "steps.csv")}
    assert list(steps) == STEPS
    failed = {k: v["exit"] for k, v in steps.items() if v["exit"] not in ("0", "")}
    assert not failed, (failed, (out / "run.log").read_text()[-3000:])
    assert steps["compare-timm"]["note"].startswith("not run: no timm")
    assert done.returncode == 0, done.stderr


def test_bench_rows_cover_both_modes_auto_batch_and_compile(dry_run) -> None:
    out, _ = dry_run
    (bench,) = out.glob("bench_cpu-*_bf16_torch*.csv")
    ok = [r for r in rows(bench) if r["status"] == "ok"]
    modes = {(r["model"], r["mode"]) for r in ok}
    assert {("lenet5", "infer"), ("resnet20", "infer"), ("lenet5", "train"),
            ("resnet20", "train")} <= modes  # fmt: skip
    assert any(r["compile"] == "true" and float(r["compile_s"]) > 0 for r in ok)
    assert all(r["precision"] == "bf16" and r["channels_last"] == "true" for r in ok)
    assert any(r["batch_requested"] == "auto" for r in ok)


def test_speed_claims_jpeg_and_ddp_write_their_results(dry_run) -> None:
    out, _ = dry_run
    speed = {p.stem for p in (out / "speed_claims").glob("*.csv")}
    assert {"rcnn", "fast_rcnn", "faster_rcnn", "yolo_v1", "googlenet"} <= speed
    verdicts = {r["verdict"] for p in (out / "speed_claims").glob("*.csv") for r in rows(p)}
    assert verdicts & {"reproduced", "deviates", "measured"}  # timed, not all skipped
    (jpeg,) = out.glob("jpeg_decode_*.csv")
    decoders = {r["decoder"]: r for r in rows(jpeg)}
    assert decoders["cpu"]["status"] == "ok" and float(decoders["cpu"]["images_per_s"]) > 0
    assert decoders["nvjpeg"]["status"] == "not-run"  # no CUDA here, and the row says so
    (ddp,) = out.glob("ddp_one_*.csv")
    (row,) = rows(ddp)
    assert row["status"] == "ok" and row["backend"] == "gloo" and row["world_size"] == "1"


def test_everything_is_packed_for_the_trip_back(dry_run) -> None:
    out, _ = dry_run
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    assert "environment.txt" in names and "speed_claims/rcnn.csv" in names
    assert {p.name for p in out.glob("*.csv")} <= names
    assert "torch" in (out / "environment.txt").read_text()
