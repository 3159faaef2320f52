from __future__ import annotations

import csv
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from repro.files import atomic_write

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "seeds"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture()
def tiny_paper_dir(tmp_path: Path) -> Path:
    """A papers directory with two small papers whose claims are measured on LeNet-5."""
    d = tmp_path / "papers"
    d.mkdir()
    (d / "alpha.yaml").write_text(TINY_ALPHA)
    (d / "beta.yaml").write_text(TINY_BETA)
    return d


_SRC = "source: {seed: test, section: generated}"
TINY_ALPHA = f"""
paper: alpha
title: A tiny paper
authors: Test
year: 2020
claims:
  - {{id: params, table: T1, row: net, metric: params, unit: K, value: 60,
      kind: analytic, tolerance: exact, {_SRC}, model: lenet5}}
  - {{id: shape, table: T1, row: net, metric: output_shape, unit: shape, value: [10],
      kind: analytic, tolerance: exact, {_SRC}, model: lenet5}}
  - {{id: top5, table: T2, row: net, metric: top5_error, unit: "%", value: 10.0, kind: accuracy,
      dataset: imagenet, tolerance: {{abs: 0.1}}, {_SRC}}}
"""
TINY_BETA = f"""
paper: beta
title: Another tiny paper
authors: Test
year: 2021
claims:
  - {{id: wrong, table: T1, row: net, metric: params, unit: count, value: 61000,
      kind: analytic, tolerance: exact, {_SRC}, model: lenet5,
      note: the table counts one parameter too many}}
"""


# --- Fault records: `make faults` writes them to benchmarks/results/faults.csv -----------------

FAULT_COLUMNS = (
    "fault", "trials", "survived", "lost_records", "duplicated_records", "recovery_seconds",
    "host_cpus", "python", "torch", "date",
)  # fmt: skip
_FAULT_RECORDS: list[dict] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--faults-csv",
        default=None,
        help="write one row per fault (trials, survived, lost/duplicated records) to this CSV",
    )


@pytest.fixture()
def fault_record():
    """Call with fault=, survived=, lost=, duplicated=, recovery_s= once per trial, before
    asserting, so a failing trial is counted too."""

    def record(fault: str, survived: bool, lost: int, duplicated: int, recovery_s: float) -> None:
        _FAULT_RECORDS.append(
            {"fault": fault, "survived": bool(survived), "lost": lost, "duplicated": duplicated,
             "recovery_s": recovery_s}
        )  # fmt: skip

    return record


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--faults-csv")
    if not path or not _FAULT_RECORDS:
        return

    by_fault: dict[str, list[dict]] = {}
    for r in _FAULT_RECORDS:
        by_fault.setdefault(r["fault"], []).append(r)
    env = {
        "host_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).date().isoformat(),
    }
    rows = [
        {
            "fault": fault,
            "trials": len(rs),
            "survived": sum(r["survived"] for r in rs),
            "lost_records": sum(r["lost"] for r in rs),
            "duplicated_records": sum(r["duplicated"] for r in rs),
            "recovery_seconds": round(max(r["recovery_s"] for r in rs), 2),
            **env,
        }
        for fault, rs in by_fault.items()
    ]

    def write(fh) -> None:
        w = csv.DictWriter(fh, fieldnames=FAULT_COLUMNS)
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write)
