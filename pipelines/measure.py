"""DVC stage `measure@PAPER`: measure one paper's claims, write reports/measurements/PAPER.*."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repro import config
from repro.errors import ReproError
from repro.runner import failures, run_papers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paper", help="paper key (repro/papers/PAPER.yaml)")
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", default="reports/measurements", help="measurement directory")
    args = parser.parse_args(argv)
    try:
        params = config.load_params(args.params)
        (run,) = run_papers(
            [args.paper],
            suites=config.suites(None, params),
            data_roots=config.data_roots(params),
            out_dir=Path(args.out),
            tracking_uri=config.tracking_uri(None, params),
            ray_address=config.ray_address(None, params),
        )
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    print(f"{run.paper}: {len(run.results)} claims measured in {run.meta['run_seconds']:.1f} s")
    problem = failures([run])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
