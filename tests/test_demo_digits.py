"""The digits demo: LeNet-5 on scikit-learn's real digits, 1 vs 2 Ray Train workers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from repro.demos import digits
from repro.demos.digits import CSV_COLUMNS, DIGITS_RECIPE, run_digits_demo


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return list(reader)


def test_in_process_seed_learns_the_digits(tmp_path: Path) -> None:
    # The recipe's 24 epochs take about 30 s in one CPU thread; 3 epochs (the cosine schedule
    # compressed into them) take about 4 s and reach about 10% (seed 0: 9.8%; the affine
    # distortions slow the first epochs), so the bound here is 15%, far below chance (90%).
    # The slow test below checks the full recipe against the demo's 3% acceptance.
    report = run_digits_demo(workers=(0,), seeds=(0,), out_dir=tmp_path, epochs=3)
    (run,) = report["runs"]
    (record,) = run["result"]["seeds"]
    assert [e["epoch"] for e in record["history"]] == [1, 2, 3]
    assert record["top1_error"] < 15.0
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]
    assert report["comparison"] == {"skipped": True}
    saved = json.loads((tmp_path / "digits.json").read_text())
    assert saved["runs"][0]["values"] == [record["top1_error"]]
    (row,) = _read_csv(tmp_path / "digits.csv")
    assert row["workers"] == "0" and row["epochs"] == "3" and row["device"] == "cpu"
    assert float(row["mean"]) == pytest.approx(record["top1_error"], abs=1e-3)


def test_comparison_and_conclusion_follow_the_numbers() -> None:
    same = digits._compare([2.0, 2.4, 2.2], [2.1, 2.5, 2.0])
    assert same["same_within_noise"] is True
    assert same["difference_ci95"][0] <= 0.0 <= same["difference_ci95"][1]
    apart = digits._compare([2.0, 2.1, 2.05], [5.0, 5.2, 5.1])
    assert apart["same_within_noise"] is False
    assert digits._compare([2.0], [2.1])["same_within_noise"] is None
    runs = [
        {"workers": 1, "mean": 2.1, "ci_low": 1.5, "ci_high": 2.7},
        {"workers": 2, "mean": 3.5, "ci_low": 3.0, "ci_high": 4.0},
    ]
    text = digits._conclusion(runs, apart, accepted=False)
    assert "NOT all below 3%" in text and "NOT the same within noise" in text


def test_recipe_is_a_valid_lenet_recipe() -> None:
    assert DIGITS_RECIPE.model == "lenet5" and DIGITS_RECIPE.eval_split == "test"
    assert DIGITS_RECIPE.batch_size % 2 == 0  # the same global batch splits over 2 workers


@pytest.mark.slow
def test_full_demo_one_and_two_ray_workers_agree(tmp_path: Path) -> None:
    report = run_digits_demo(out_dir=tmp_path)
    one, two = report["runs"]
    assert (one["workers"], two["workers"]) == (1, 2)
    assert len(one["values"]) == len(two["values"]) == 3
    # The recipe measured 2.5-3% test error (5 seeds; see repro.demos.digits), against the 3%
    # target the report judges (`acceptance`); 6% guards against a training regression.
    assert one["mean"] < 6.0 and two["mean"] < 6.0
    assert report["comparison"]["same_within_noise"] is True
    assert report["acceptance"]["converged"] == (two["mean"] < digits.ACCEPT_ERROR > one["mean"])
    assert two["result"]["environment"]["world_size"] == 2
    rows = _read_csv(tmp_path / "digits.csv")
    assert [r["workers"] for r in rows] == ["1", "2"]
