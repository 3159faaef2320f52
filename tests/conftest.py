from __future__ import annotations

from pathlib import Path

import pytest

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
