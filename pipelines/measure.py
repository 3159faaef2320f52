"""DVC stage `measure@PAPER`: measure one paper's claims, write reports/measurements/PAPER.*."""

from __future__ import annotations

import argparse
import sys

from repro.errors import ReproError
from repro.runner import RunInterrupted, RunSettings, run_papers, stage_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paper", help="paper key (repro/papers/PAPER.yaml)")
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", default="reports/measurements", help="measurement directory")
    args = parser.parse_args(argv)
    try:
        settings = RunSettings.resolve(args.params, out_dir=args.out)
        (run,) = run_papers([args.paper], settings)
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    except RunInterrupted as stop:  # Ctrl-C or SIGTERM: the finished paper is written
        print(stop.message("the next `dvc repro` measures it again"), file=sys.stderr)
        return stop.exit_code
    print(f"{run.paper}: {len(run.results)} claims measured in {run.meta['run_seconds']:.1f} s")
    return stage_status([run])


if __name__ == "__main__":
    sys.exit(main())
