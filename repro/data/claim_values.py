"""The value of a `kind: dataset` claim: the dataset verified (without decoding), then its
statistic (repro.data.stats) or its dimension-cluster analysis (repro.data.anchors)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from repro.data.anchors import ANCHOR_METRICS, anchor_metric
from repro.data.stats import CLAIM_DATASETS, METRICS, UNITS, dataset_stats
from repro.data.verify import verify_dataset
from repro.data.verify_report import VerifyReport
from repro.errors import ReproError

log = logging.getLogger("repro.data")


def claim_report(name: str, root: Path | str) -> VerifyReport:
    """The scan a `kind: dataset` claim is counted on: the dataset verified without decoding.
    Several claims on one dataset share it (:func:`dataset_metric`'s ``report``)."""
    if name not in CLAIM_DATASETS:
        raise ReproError(
            f"dataset {name!r} has no reader in repro.data.",
            f"use one of {', '.join(CLAIM_DATASETS)}.",
        )
    report = verify_dataset(name, root, decode=False, progress=False)
    if not report.ok:
        log.warning(
            "%s at %s has problems; counts may be off:\n%s", name, root, report.problems.summary()
        )
    return report


def dataset_metric(
    name: str,
    root: Path | str,
    metric: str,
    protocol_split: str | None = None,
    unit: str = "count",
    report: VerifyReport | None = None,
    params: Mapping[str, int | float | str] | None = None,
) -> float:
    """The value of a `kind: dataset` claim, read from `dataset_stats` of ``report`` (by
    default :func:`claim_report` of ``name`` at ``root``). `unit` "K"/"M" divides (a claim's
    num_images is in K). The ANCHOR_METRICS come from repro.data.anchors.anchor_metric with the
    claim's ``params`` (`k`, `index`, `priors`, ...; its PARAMS), on the training split unless
    ``params`` or ``protocol_split`` names one."""
    if metric not in METRICS:
        raise ReproError(f"dataset metric {metric!r} is unknown.", f"use one of {METRICS}.")
    if unit not in UNITS:
        raise ReproError(f"unit {unit!r} is unknown for a dataset count.", f"use {list(UNITS)}.")
    report = report if report is not None else claim_report(name, root)
    if metric in ANCHOR_METRICS:
        if not params:
            raise ReproError(
                f"{metric} needs the claim's `params` (k and index, or priors), and none reached "
                "the dataset suite.",
                "set `params:` in the claim (keys: repro.data.anchors.PARAMS) and pass "
                "claim.params to dataset_metric(..., params=claim.params).",
            )
        params = dict(params)
        if protocol_split and "split" not in params:
            params["split"] = protocol_split
        return anchor_metric(report, metric, params)
    stats = dataset_stats(report, protocol_split)
    value = stats.get(metric)
    if value is None:
        raise ReproError(
            f"{metric} is not defined for {name} at {root} (splits {stats['protocol_splits']}).",
            "check the dataset holds the protocol's splits (`repro data stats`).",
        )
    return float(value) / (UNITS[unit] if metric in ("num_images", "num_objects") else 1.0)
