"""Step 1 of a run, the plan: load and check every paper, the tracking store and the cluster
address, and decide for each claim which suite measures it or why it is not run. Writes
nothing, measures nothing, starts no Ray: a bad input stops the run before any file changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from repro import tracking
from repro.claims import Claim, Paper, load_paper
from repro.data.roots import data_root, dataset_present
from repro.errors import ReproError
from repro.execution.state import check_address, is_initialized
from repro.models import get_model_spec
from repro.runner.settings import RunSettings
from repro.suites import get_suite, suite_names, suite_of
from repro.suites.registry import SuiteSettings
from repro.verdicts import Result, result_for


@dataclass
class PaperPlan:
    """One paper's plan: the claims each selected suite measures, and the not-run rows."""

    paper: Paper
    claims: dict[str, list[Claim]] = field(default_factory=dict)  # suite name -> its claims
    not_run: list[Result] = field(default_factory=list)

    def of(self, suite: str) -> list[Claim]:
        return self.claims.get(suite, [])


@dataclass
class RunPlan:
    plans: list[PaperPlan]
    settings: RunSettings

    def suite_items(self, suite: str) -> list[tuple[Paper, list[Claim]]]:
        return [(p.paper, p.of(suite)) for p in self.plans if p.of(suite)]


def check_suites(suites: Iterable[str]) -> None:
    for s in suites:
        get_suite(s)  # names the valid ones


def not_run_reason(claim: Claim, paper: Paper, settings: SuiteSettings) -> str | None:
    """Why this claim cannot be measured in this run, or None if it can."""
    suites = list(settings.suites)
    if settings.claims and claim.id not in settings.claims:
        return f"not selected (--claims {','.join(settings.claims)})"
    suite = suite_of(claim)
    if suite is None:
        return f"kind {claim.kind!r} is outside the selected suites ({', '.join(sorted(suites))})"
    if suite.needs_dataset:
        dataset = claim.dataset or ""
        root = data_root(dataset, settings.data_roots)
        if not dataset_present(dataset, root):
            where = f" at {root}" if root else ""
            return (
                f"dataset not present: {claim.dataset}{where} (set data.{claim.dataset} in "
                f"params.yaml or REPRO_DATA_{dataset.upper()} to its root)"
            )
    if suite.name not in suites:
        return suite.unselected(suites)
    return suite.not_run_reason(claim, paper, settings)


def plan_paper(paper: Paper, settings: SuiteSettings) -> PaperPlan:
    """Which suite measures each claim of ``paper``, and why the others are not run."""
    check_suites(settings.suites)
    for name in suite_names():  # what each suite checks before anything runs (models, pipelines)
        get_suite(name).check(paper)
    plan = PaperPlan(paper)
    for claim in paper.claims:
        reason = not_run_reason(claim, paper, settings)
        if reason is not None:
            plan.not_run.append(result_for(claim, paper.paper, None, "not-run", reason))
            continue
        plan.claims.setdefault(claim.kind, []).append(claim)
    return plan


def check_claims(papers: Sequence[Paper], claims: Sequence[str]) -> None:
    """ReproError naming the first of ``claims`` (--claims) that none of ``papers`` has."""
    known = {c.id for p in papers for c in p.claims}
    unknown = [c for c in claims if c not in known]
    if unknown:
        keys = [p.paper for p in papers]
        raise ReproError(
            f"--claims: no claim {unknown[0]!r} in {', '.join(keys)}.",
            f"list the ids with `repro papers {' '.join(keys)} --claims`.",
        )


def check_out_dir(out: Path | None) -> None:
    """ReproError, before anything is measured, when the output folder (--out) is a file, or
    cannot be created or written. Creates nothing."""
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise ReproError(
            f"--out {out} is a file, not a folder; nothing was measured.",
            "pass a folder for the measurement files (it is created if missing), or move "
            f"{out} away.",
        )
    existing = next(p for p in [out, *out.parents] if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise ReproError(
            f"--out {out} cannot be created: {existing} is a file; nothing was measured.",
            "pass a folder whose parents are folders.",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ReproError(
            f"--out {out} cannot be written: {existing} is not writable; nothing was measured.",
            f"make {existing} writable, or pass another folder to --out.",
        )


def plan_run(keys: Sequence[str], settings: RunSettings) -> RunPlan:
    """Load and check every paper, the tracking store, the cluster address and the output
    folder; plan each paper. Raises ReproError naming the file, entry or flag at fault."""
    check_suites(settings.suites)
    check_out_dir(settings.out_dir)
    papers = [load_paper(k, settings.papers_dir) for k in keys]
    if settings.tracking_uri:
        tracking.check_tracking_uri(settings.tracking_uri)
    # a Ray already joined (a test's or a DVC stage's shared one) needs no check
    if settings.use_ray and settings.ray_address and not is_initialized():
        check_address(settings.ray_address)
    check_claims(papers, settings.claims)
    check_weights(settings.accuracy.weights if settings.accuracy else {})
    plans = [plan_paper(p, settings) for p in papers]
    return RunPlan(plans, settings)


def check_weights(weights: Mapping[str, str]) -> None:
    """ReproError naming a weights entry (params.yaml `weights:`, REPRO_WEIGHTS_<MODEL>,
    --weights) whose model is not registered: it would be ignored without a word."""
    for model in weights:
        try:
            get_model_spec(model)
        except ReproError as exc:
            raise ReproError(
                f"weights for {model!r} (params.yaml weights:, REPRO_WEIGHTS_{model.upper()} or "
                f"--weights): {exc.cause}",
                exc.fix,
            ) from None
