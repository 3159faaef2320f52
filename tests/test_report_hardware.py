"""The speed suite's results per hardware in the report (repro.report.hardware): one row per
claim and per hardware in results.csv, one column per hardware in the speed section."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from repro.report import write_report
from repro.report.hardware import fold_runs, hardware_label, read_runs
from repro.verdicts import RESULT_COLUMNS

COMMITTED = Path(__file__).resolve().parents[1] / "benchmarks" / "speed_claims"
GPU_ENV = {"device": "cuda", "gpu": "NVIDIA H200", "cpu": "Intel Xeon", "precision": "bf16",
           "torch": "2.11.0+cu130"}  # fmt: skip


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def second_hardware(root: Path) -> Path:
    """A copy of the committed CPU folder as if an H200 had measured it, 20x faster."""
    (cpu,) = [p for p in COMMITTED.iterdir() if p.is_dir()]
    shutil.copytree(cpu, root / cpu.name)
    gpu = root / "cuda-nvidia-h200_bf16_torch2.11.0"
    gpu.mkdir()
    for path in cpu.glob("*.csv"):
        rows = rows_of(path)
        for r in rows:
            if r["kind"] == "speed" and r["measured"] and r["unit"] == "s":
                r["measured"] = str(float(r["measured"]) / 20)
        with (gpu / path.name).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        meta = json.loads(path.with_suffix(".json").read_text())
        meta.update(environment=GPU_ENV, finished="2026-12-07T00:00:00+00:00")
        (gpu / path.with_suffix(".json").name).write_text(json.dumps(meta))
    return root


def placeholder(paper: str, claim_id: str) -> dict:
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(paper=paper, claim_id=claim_id, table="T", row=claim_id, metric="m", kind="speed",
               verdict="not-run", note="measured by the speed suite")  # fmt: skip
    return row


def test_labels_name_the_chip_precision_and_torch() -> None:
    assert hardware_label(GPU_ENV) == "cuda (NVIDIA H200), bf16, torch 2.11.0+cu130"
    assert hardware_label({"device": "cpu", "gpu": "none", "cpu": "AMD EPYC", "precision": "fp32",
                           "torch": "2.14.1"}) == "cpu (AMD EPYC), fp32, torch 2.14.1"  # fmt: skip


def test_each_hardware_replaces_the_placeholders_with_its_rows(tmp_path: Path) -> None:
    runs = read_runs(second_hardware(tmp_path))
    assert len(runs) == 2
    timed = {(r["paper"], r["claim_id"]) for r in runs[0].rows}
    paper, claim_id = sorted(timed)[0]
    other = dict(placeholder(paper, "analytic-one"), kind="analytic", verdict="reproduced")
    folded = fold_runs([placeholder(paper, claim_id), other], [], runs)
    mine = [r for r in folded if r["claim_id"] == claim_id]
    assert {r["hardware"] for r in mine} == {run.label for run in runs}  # one row per hardware
    assert all(r["note"] != "measured by the speed suite" for r in mine)
    assert [r["hardware"] for r in folded if r["claim_id"] == "analytic-one"] == ["this machine"]


def test_a_second_hardware_adds_its_column(tmp_path: Path) -> None:
    speed = second_hardware(tmp_path / "speed")
    papers = sorted({r["paper"] for run in read_runs(speed) for r in run.rows})
    rows = [placeholder(p, "x") for p in papers]
    paths = write_report(rows, [], tmp_path / "out", bench_dir=None, speed_dir=speed)
    results = rows_of(paths["csv"])
    hardware = {r["hardware"] for r in results if r["kind"] == "speed" and r["claim_id"] != "x"}
    cpu = {run.label for run in read_runs(COMMITTED)}  # the committed CPU folder's label
    assert len(cpu) == 1 and next(iter(cpu)).startswith("cpu")
    assert hardware == {"cuda (NVIDIA H200), bf16, torch 2.11.0+cu130", *cpu}
    md = paths["markdown"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| paper | claim |"))
    assert "cuda (NVIDIA H200), bf16" in header and next(iter(cpu)).split(",")[0] in header
    assert "| speed verdicts |" in md
    assert "id='speed'" in paths["html"].read_text()
