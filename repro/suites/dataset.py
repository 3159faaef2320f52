"""The dataset suite: `kind: dataset` claims measured on the datasets present. Counts (classes,
images, objects per image) and dimension clusters come from repro.data.stats; selective
search's proposals per image and R-CNN's feature cache from the proposals
repro.methods.rcnn.system caches."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.analytic import profile_model
from repro.claims import Claim, Paper
from repro.config import AccuracySettings, load_settings
from repro.data.claim_values import claim_report, dataset_metric
from repro.data.roots import data_roots_of
from repro.data.stats import CLAIM_DATASETS, METRICS
from repro.errors import ReproError
from repro.methods.rcnn.regions import proposal_base, proposal_cache_dir, require_selective_search
from repro.methods.rcnn.system import proposal_counts
from repro.methods.rpn_proposals import PROPOSALS_METRIC
from repro.suites.registry import Suite, SuiteSettings, register_suite
from repro.verdicts import GroupOutcome, in_unit, judge, result_for

FEATURE_CACHE_METRIC = "feature_cache_size"
SELECTIVE_SEARCH_METRICS = (PROPOSALS_METRIC, FEATURE_CACHE_METRIC)  # dataset claims


def dataset_not_run_reason(claim: Claim) -> str | None:
    if claim.metric in SELECTIVE_SEARCH_METRICS:  # as R-CNN and Fast R-CNN ran it
        if not (claim.dataset or "").startswith("voc"):
            return f"selective-search proposals are counted on VOC sets, not {claim.dataset}"
        try:
            require_selective_search()
        except ReproError as exc:
            return exc.cause
        return None
    if claim.metric not in METRICS:
        return (
            f"the dataset suite counts {', '.join(METRICS)}; {claim.metric!r} needs an "
            "analysis the harness does not do"
        )
    if claim.dataset not in CLAIM_DATASETS:
        return f"the dataset suite has no reader for {claim.dataset}"
    return None


def selective_search_proposals(claim: Claim, root: str, storage: str) -> tuple[float, str]:
    """Selective-search (fast mode) proposals of the claim's VOC split (`params: {split: ...}`,
    default test), cached where the R-CNN pipeline reads them: their mean per image
    (proposals_per_image), or the bytes of the claim's `layer` of `model` (fp32) for all of
    them (feature_cache_size, R-CNN's feature cache)."""
    split = str(claim.params.get("split", "test"))
    cache = proposal_cache_dir(proposal_base(storage), claim.dataset or "", root, split)
    counts = proposal_counts(root, split, cache_dir=cache)
    where = f"selective search (fast mode) on {root} ({split}, {len(counts)} images)"
    if claim.metric == PROPOSALS_METRIC:
        return sum(counts) / len(counts), f"{where}; proposals cached in {cache}"
    elements = feature_elements(claim)
    return 4.0 * elements * sum(counts), (
        f"{where}: {sum(counts)} proposals x {elements} fp32 values of "
        f"{claim.model.name if claim.model else ''} {claim.layer}"
    )


def feature_elements(claim: Claim) -> int:
    """Elements of the output of the claim's `layer` of its `model` for one image."""
    if claim.model is None or not isinstance(claim.layer, str):
        raise ReproError(
            f"claim {claim.id}: {FEATURE_CACHE_METRIC} needs `model` and one `layer` (the "
            "cached feature, e.g. alexnet_single's pool5).",
            "add them to the claim.",
        )
    profile = profile_model(claim.model.name, claim.model.kwargs, claim.model.input_size)
    if claim.layer not in profile.layers:
        raise ReproError(
            f"claim {claim.id}: {claim.model.name} has no layer {claim.layer!r}.",
            f"use a module path of `repro models --layers {claim.model.name}`.",
        )
    return profile.layers[claim.layer].output_elements


def measure_dataset_claims(
    paper: str,
    claims: Sequence[Claim],
    roots: Mapping[str, str],
    settings: AccuracySettings | None = None,
) -> GroupOutcome:
    """Count the dataset claims' metrics on the datasets present: each dataset is scanned once
    (annotations parsed, images listed, not decoded)."""
    start = time.perf_counter()
    reports: dict[str, Any] = {}
    results = []
    for claim in claims:
        dataset = claim.dataset or ""
        root = roots[dataset]
        try:
            if claim.metric in SELECTIVE_SEARCH_METRICS:
                storage = (settings or load_settings().accuracy).storage
                raw, where = selective_search_proposals(claim, root, storage)
            else:
                if dataset not in reports:
                    reports[dataset] = claim_report(dataset, Path(root))
                report = reports[dataset]
                split = claim.params.get("split")  # a count of one split (`params: {split: test}`)
                raw = dataset_metric(
                    dataset,
                    root,
                    claim.metric,
                    protocol_split=str(split) if split else None,
                    report=report,
                    params=claim.params,
                )
                problems = len(report.problems)
                found = f" ({problems} problem(s) found; `repro data verify {dataset}` lists them)"
                where = f"counted on {root}" + (found if problems else "")
        except ReproError as exc:
            results.append(result_for(claim, paper, None, "error", exc.paragraph()))
            continue
        measured = in_unit(claim, float(raw))
        verdict, note = judge(claim, measured)
        results.append(result_for(claim, paper, measured, verdict, f"{note}; {where}".lstrip("; ")))
    elapsed = round(time.perf_counter() - start, 3)
    key = "datasets:" + ",".join(sorted({c.dataset or "" for c in claims}))
    return GroupOutcome(
        key, "", {}, [], {"measure_seconds": elapsed}, results, elapsed, paper=paper
    )


@dataclass(frozen=True)
class DatasetGroup:
    """One paper's dataset claims: every dataset they use is scanned once."""

    paper: str
    claims: tuple[Claim, ...]
    roots: dict[str, str]
    settings: AccuracySettings

    @property
    def papers(self) -> tuple[str, ...]:
        return (self.paper,)


@register_suite
class DatasetSuite(Suite[DatasetGroup]):
    name = "dataset"
    placement = "driver"
    needs_dataset = True

    def not_run_reason(self, claim: Claim, paper: Paper, settings: SuiteSettings) -> str | None:
        return dataset_not_run_reason(claim)

    def groups(
        self, items: Sequence[tuple[Paper, list[Claim]]], settings: SuiteSettings
    ) -> list[DatasetGroup]:
        return [
            DatasetGroup(
                paper.paper,
                tuple(claims),
                data_roots_of(claims, settings.data_roots),
                settings.accuracy_settings,
            )
            for paper, claims in items
            if claims
        ]

    def measure(self, group: DatasetGroup) -> list[GroupOutcome]:
        return [measure_dataset_claims(group.paper, group.claims, group.roots, group.settings)]

    def failed(self, group: DatasetGroup, note: str) -> list[GroupOutcome]:
        rows = [result_for(c, group.paper, None, "error", note) for c in group.claims]
        return [GroupOutcome("datasets", "datasets", {}, [], {}, rows, paper=group.paper)]
