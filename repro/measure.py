"""Measure a paper in this process, no Ray and no MLflow: the reference path tests call, and
``python -m repro.measure PAPER`` for development."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping

from repro.claims import Paper, load_paper
from repro.config import AccuracySettings, SpeedSettings
from repro.errors import ReproError
from repro.runner.execute import execute
from repro.runner.plan import RunPlan, plan_paper
from repro.runner.settings import RunSettings
from repro.suites import suite_names
from repro.verdicts import Result, order_results


def measure_paper_local(
    paper: Paper,
    suites: Iterable[str] = ("analytic",),
    data_roots: Mapping[str, str] | None = None,
    speed_settings: SpeedSettings | None = None,
    accuracy: AccuracySettings | None = None,
) -> list[Result]:
    """No files written. ``speed_settings``: by default params.yaml's ``speed:`` and
    ``REPRO_SPEED_*``. ``accuracy``: the accuracy suite's settings (training runs on Ray Train
    workers unless ``accuracy.workers`` is 0)."""
    settings = RunSettings(
        suites=tuple(suites),
        data_roots=dict(data_roots or {}),
        out_dir=None,
        use_ray=False,
        speed=speed_settings,
        accuracy=accuracy,
    )
    plan = plan_paper(paper, settings)
    execution = execute(RunPlan([plan], settings))
    results = [*plan.not_run, *(r for o in execution.outcomes for r in o.results)]
    return order_results(paper, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repro.measure",
        description="Measure a paper's claims in-process (no Ray, no MLflow) and print "
        "claimed vs measured. For development; `repro run` is the user command.",
    )
    parser.add_argument("papers", nargs="+", help="paper keys, e.g. vgg resnet")
    parser.add_argument("--all", action="store_true", help="also print not-run claims")
    parser.add_argument(
        "--suite", action="append", choices=suite_names(), help="suites (default: analytic)"
    )
    args = parser.parse_args(argv)
    for key in args.papers:
        try:
            paper = load_paper(key)
        except ReproError as exc:
            print(exc.paragraph(), file=sys.stderr)
            return 2
        for r in measure_paper_local(paper, args.suite or ["analytic"]):
            if r.verdict == "not-run" and not args.all:
                continue
            print(
                f"{r.paper:12} {r.claim_id:40.40} {r.verdict:10} claimed={r.claimed:>14} "
                f"measured={r.measured:>14} {r.unit:6} {r.note}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
