"""DVC stage `report`: reports/results.csv, README.md and index.html from the measurements."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repro.errors import ReproError
from repro.report import demo_seconds, read_demos, read_measurements, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measurements", default="reports/measurements")
    parser.add_argument("--demos", default="reports/demos", help="demonstration results")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    try:
        rows, metas = read_measurements(Path(args.measurements))
        demos = Path(args.demos)
        paths = write_report(
            rows, metas, Path(args.out), read_demos(demos), demo_seconds(demos), demos_dir=demos
        )
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
