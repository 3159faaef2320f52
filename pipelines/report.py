"""DVC stage `report`: reports/results.csv, README.md, index.html and charts/ from the
measurements, then logged to MLflow (experiment repro/report) as artifacts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repro import config
from repro.errors import ReproError
from repro.report import log_report, write_report
from repro.report.content import demo_seconds, read_demos, read_measurements
from repro.report.rows import skipped_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measurements", default="reports/measurements")
    parser.add_argument("--demos", default="reports/demos", help="demonstration results")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: params.yaml's)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report")
    parser.add_argument("--params", help="params file (default: ./params.yaml if present)")
    args = parser.parse_args(argv)
    try:
        uri = config.load_settings(args.params, tracking_uri=args.tracking_uri).tracking_uri
        rows, metas, skipped = read_measurements(Path(args.measurements))
        demos = Path(args.demos)
        paths = write_report(rows, metas, Path(args.out), read_demos(demos), demo_seconds(demos),
                             demos_dir=demos, skipped=skipped)  # fmt: skip
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in paths.values()) + skipped_line(skipped))
    if not args.no_mlflow:
        logged, line = log_report(paths, uri)
        print(line, file=sys.stdout if logged else sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
