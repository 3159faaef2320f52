"""DVC stage `demo@NAME`: run one embedded demonstration (digits, detection), write
reports/demos/NAME.json and NAME.csv and log it to MLflow (repro/demos)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from repro import config
from repro.cli import main as repro_main
from repro.demos.cli import DEMOS
from repro.environment import process_seconds
from repro.errors import ReproError
from repro.files import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("demo", choices=DEMOS)
    parser.add_argument("--params", default="params.yaml", help="params file")
    args = parser.parse_args(argv)
    try:
        demo = config.load_settings(args.params).demos
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    flags = ["demo", args.demo, "--params", args.params, "--out", "reports/demos"]
    epochs = demo.digits_epochs if args.demo == "digits" else demo.detection_epochs
    if args.demo == "digits":
        workers = ",".join(str(w) for w in demo.digits_workers)
        flags += ["--workers", workers, "--seeds", str(demo.digits_seeds)]
    if epochs:
        flags += ["--epochs", str(epochs)]
    if args.demo == "detection" and demo.detection_images:
        flags += ["--images", str(demo.detection_images)]
    status = repro_main(flags)
    path = Path("reports/demos") / f"{args.demo}.json"
    if status == 0 and path.exists():  # the stage's whole cost, imports and Ray included
        record = json.loads(path.read_text())
        record["process_seconds"] = process_seconds()
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
