"""Confidence intervals, the claimed-vs-measured verdict, and Welch's comparison of run sets."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from repro.errors import ReproError
from repro.evaluation.stats import judge_interval, mean_ci, welch_same


def test_mean_ci_matches_scipy_t_interval() -> None:
    values = [36.7, 37.2, 36.9, 37.5, 36.8]
    mean, low, high = mean_ci(values, confidence=0.95)
    want_low, want_high = stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / 5, scale=stats.sem(values)
    )
    assert mean == pytest.approx(37.02)
    assert (low, high) == pytest.approx((want_low, want_high), rel=1e-12)
    # by hand: s = sqrt(0.428 / 4) = 0.327109, t(0.975, 4) = 2.776445 -> s t / sqrt(5) = 0.406159
    assert high - mean == pytest.approx(0.406159, abs=1e-5)
    assert mean_ci(values, confidence=0.99)[2] > high


def test_mean_ci_single_and_constant_values() -> None:
    assert mean_ci([42.0]) == (42.0, 42.0, 42.0)
    assert mean_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    with pytest.raises(ReproError, match="empty"):
        mean_ci([])
    with pytest.raises(ReproError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)


def test_judge_interval_cases() -> None:
    assert judge_interval(18.2, 18.5, 18.3, 18.7) == "deviates"  # no tolerance: must contain
    assert judge_interval(18.2, 18.5, 18.1, 18.7) == "reproduced"
    assert judge_interval(18.2, 18.5, 18.3, 18.7, tol_abs=0.1) == "reproduced"  # touches
    assert judge_interval(18.2, 18.5, 18.31, 18.7, tol_abs=0.1) == "deviates"
    assert judge_interval(100.0, 104.0, 103.0, 105.0, tol_rel=0.02) == "deviates"
    assert judge_interval(100.0, 104.0, 103.0, 105.0, tol_rel=0.03) == "reproduced"
    # both given: the larger tolerance (rel 0.03 * 100 = 3 > abs 1) decides
    assert judge_interval(100.0, 104.0, 103.0, 105.0, tol_abs=1.0, tol_rel=0.03) == "reproduced"
    assert judge_interval(-10.0, -7.0, -7.5, -6.5, tol_rel=0.25) == "reproduced"  # |claimed|
    assert judge_interval(5.0, *mean_ci([5.2]), tol_abs=0.1) == "deviates"
    with pytest.raises(ReproError, match="low > high"):
        judge_interval(1.0, 1.0, 2.0, 0.5)


def test_welch_same_matches_scipy() -> None:
    one_worker = [1510.0, 1523.0, 1498.0, 1515.0]
    two_workers = [1502.0, 1519.0, 1508.0]
    same, diff, (low, high) = welch_same(one_worker, two_workers)
    ref = stats.ttest_ind(one_worker, two_workers, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert diff == pytest.approx(sum(one_worker) / 4 - sum(two_workers) / 3)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert same is True and (ref.pvalue > 0.05)
    same, diff, _ = welch_same([10.0, 10.1, 9.9], [12.0, 12.1, 11.9])
    assert same is False and diff == pytest.approx(-2.0)


def test_welch_same_degenerate_inputs() -> None:
    assert welch_same([1.0, 1.0], [1.0, 1.0]) == (True, 0.0, (0.0, 0.0))
    assert welch_same([1.0, 1.0], [2.0, 2.0]).same is False
    with pytest.raises(ReproError, match="two runs or more"):
        welch_same([1.0], [1.0, 2.0])
    with pytest.raises(ReproError, match="non-finite"):
        welch_same([1.0, math.nan], [1.0, 2.0])
