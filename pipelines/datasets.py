"""DVC stage `datasets`: verify every dataset root set in params.yaml `data:` and write its
manifest (counts per split, classes, problems by kind, checksum of the index) to
reports/datasets/NAME.json; datasets not present are listed as such in reports/datasets/index.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from repro import config
from repro.data.roots import data_root
from repro.data.verify import verify_dataset
from repro.errors import ReproError
from repro.files import atomic_write_text

VERIFIABLE = ("imagenet", "voc2007", "voc2010", "voc2012", "coco", "mnist", "fashion_mnist")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file")
    parser.add_argument("--out", default="reports/datasets", help="manifest directory")
    args = parser.parse_args(argv)
    try:
        settings = config.load_settings(args.params)
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    roots = settings.data_roots
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, dict[str, object]] = {}
    status = 0
    for name in sorted(set(type(settings.data).model_fields) | set(VERIFIABLE)):
        root = data_root(name, roots)
        if not root or not Path(root).exists():
            index[name] = {"present": False, "root": root or ""}
            continue
        if name not in VERIFIABLE:
            index[name] = {"present": True, "root": root, "verified": False}
            continue
        try:
            report = verify_dataset(name, Path(root))
        except ReproError as exc:
            print(exc.paragraph(), file=sys.stderr)
            index[name] = {"present": True, "root": root, "error": exc.paragraph()}
            status = 1
            continue
        report.write_manifest(out / f"{name}.json")
        index[name] = {"present": True, "root": root, "ok": report.ok}
        print(report.problems.summary() if len(report.problems) else f"{name}: ok")
    atomic_write_text(out / "index.json", json.dumps(index, indent=2) + "\n")
    present = [n for n, v in index.items() if v["present"]]
    print(f"datasets present: {', '.join(present) or 'none'}; manifests in {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
