"""Statistics for judging repeated runs: Student t confidence intervals, the verdict of a claimed
value against an interval, and Welch's test of whether two sets of runs agree within noise."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Literal, NamedTuple

from scipy import stats

from repro.errors import ReproError

Verdict = Literal["reproduced", "deviates"]


class WelchResult(NamedTuple):
    same: bool  # the confidence interval of mean(a) - mean(b) contains 0
    diff: float  # mean(a) - mean(b)
    ci: tuple[float, float]


def _values(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ReproError(f"{name} is empty: no runs to summarize.", "measure at least one run.")
    if not all(math.isfinite(v) for v in out):
        raise ReproError(f"{name} holds a non-finite value: {out}.", "drop the failed runs.")
    return out


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ReproError(f"confidence {confidence} is not in (0, 1).", "pass e.g. 0.95.")


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the Student t interval (n - 1 degrees of freedom, standard error
    s / sqrt(n)). One value or identical values: (v, v, v), no spread to estimate."""
    _check_confidence(confidence)
    data = _values(values, "values")
    n = len(data)
    mean = sum(data) / n
    sem = statistics.stdev(data) / math.sqrt(n) if n > 1 else 0.0
    if sem == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def judge_interval(
    claimed: float,
    mean: float,
    low: float,
    high: float,
    *,
    tol_abs: float | None = None,
    tol_rel: float | None = None,
) -> Verdict:
    """ "reproduced" when [low, high] overlaps [claimed - tol, claimed + tol], else "deviates".
    tol is ``tol_abs``, ``tol_rel * |claimed|``, the larger of the two when both are given, and
    0 when neither is (the interval must then contain the claimed value). ``mean`` is not
    used by the verdict; it is part of the signature so callers pass ``*mean_ci(...)``."""
    if low > high:
        raise ReproError(f"interval [{low}, {high}] has low > high.", "pass low <= high.")
    tolerances = [t for t in (tol_abs, None if tol_rel is None else tol_rel * abs(claimed)) if t]
    if any(t < 0 for t in tolerances):
        raise ReproError(f"negative tolerance {tol_abs=} {tol_rel=}.", "tolerances are >= 0.")
    tol = max(tolerances, default=0.0)
    return "reproduced" if low <= claimed + tol and high >= claimed - tol else "deviates"


def welch_same(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> WelchResult:
    """Whether two sets of runs (e.g. 1 vs 2 workers) agree within noise: the Welch t interval
    of mean(a) - mean(b) (Welch-Satterthwaite degrees of freedom) contains 0. Each set needs two
    values or more; when both have zero spread the interval is the difference itself."""
    _check_confidence(confidence)
    xa, xb = _values(a, "a"), _values(b, "b")
    if len(xa) < 2 or len(xb) < 2:
        raise ReproError(
            f"Welch's test needs two runs or more per set (got {len(xa)} and {len(xb)}).",
            "repeat the runs (e.g. --repeats 3) before comparing them.",
        )
    diff = sum(xa) / len(xa) - sum(xb) / len(xb)
    va = statistics.variance(xa) / len(xa)
    vb = statistics.variance(xb) / len(xb)
    if va + vb == 0.0:
        return WelchResult(diff == 0.0, diff, (diff, diff))
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    low, high = stats.t.interval(confidence, df, loc=diff, scale=math.sqrt(va + vb))
    low, high = float(low), float(high)
    return WelchResult(low <= 0.0 <= high, diff, (low, high))
