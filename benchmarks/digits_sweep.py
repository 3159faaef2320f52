r"""Choose the digits demo's LeNet-5 recipe on the validation split, never on test.

Every point of a small grid (digit size in the 32x32 field, epochs, learning rate, augmentation)
trains `repro.demos.digits.DIGITS_RECIPE`, so modified, on the digits' "train-minus-val" split
(1,078 images) and scores "val" (269 images, carved from "train" by class; see
repro.data.training_sets), for seeds 0, 1, 2, in this process (fit with workers=0, one torch
thread, no loader processes, as the demo trains). The test split is never loaded here.

    # the 81-point grid (~75 min on one core), then the lower-lr check that followed it:
    .venv/bin/python benchmarks/digits_sweep.py
    .venv/bin/python benchmarks/digits_sweep.py --lrs 0.001 --sizes 24,28 --epochs 24,32 \
        --augmentations affine

Each finished point is appended to benchmarks/results/digits_sweep_val.csv at once, and a rerun
skips the points already there (delete the file to start over). The .json beside it records the
environment, the split sizes, the values measured, the selection rule and the point chosen among
all the CSV's points. Selection: the lowest mean val error over the seeds; ties go to fewer
epochs, then to no augmentation over random_shift over affine, then to the lower learning rate,
then to the smaller digit.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from repro.data.training_sets import (  # noqa: E402
    DIGITS_SPLITS,
    digits_field,
    digits_split_indices,
)
from repro.demos.digits import DIGITS_RECIPE  # noqa: E402
from repro.errors import ReproError  # noqa: E402
from repro.runtime.device import cpu_name  # noqa: E402
from repro.train.fit import FitConfig, fit  # noqa: E402

log = logging.getLogger("benchmarks.digits_sweep")

TRAIN_SPLIT = "train-minus-val"
VAL_SPLIT = "val"
DIGIT_SIZES = (20, 24, 28)
EPOCHS = (16, 24, 32)
LEARNING_RATES = (0.002, 0.004, 0.006)
AUGMENTATIONS = ("none", "random_shift", "affine")  # also the tie-break order
SEEDS = (0, 1, 2)
RESULTS = ROOT / "benchmarks" / "results"
CSV_NAME = "digits_sweep_val.csv"
COLUMNS = (
    "digit_size",
    "epochs",
    "lr",
    "augmentation",
    "train_split",
    "eval_split",
    "train_images",
    "eval_images",
    "seeds",
    "val_errors",
    "mean_val_error",
    "sd_val_error",
    "diverged",
    "last_losses",
    "seconds",
)


@dataclass(frozen=True)
class Point:
    digit_size: int
    epochs: int
    lr: float
    augmentation: str

    def key(self) -> tuple[str, str, str, str]:
        return (str(self.digit_size), str(self.epochs), repr(self.lr), self.augmentation)


def grid(
    sizes: Sequence[int] = DIGIT_SIZES,
    epochs: Sequence[int] = EPOCHS,
    lrs: Sequence[float] = LEARNING_RATES,
    augmentations: Sequence[str] = AUGMENTATIONS,
) -> list[Point]:
    for name in augmentations:
        if name not in AUGMENTATIONS:
            raise ReproError(
                f"unknown augmentation {name!r} (--augmentations).",
                f"use some of {', '.join(AUGMENTATIONS)}.",
            )
    return [Point(*p) for p in itertools.product(sizes, epochs, lrs, augmentations)]


def val_recipe(point: Point) -> dict[str, Any]:
    """The demo's recipe with this point's settings, trained on train-minus-val, scored on val."""
    optimizer = DIGITS_RECIPE.optimizer.model_copy(update={"lr": point.lr})
    recipe = DIGITS_RECIPE.model_copy(
        update={
            "name": "lenet5-digits-sweep",
            "train_split": TRAIN_SPLIT,
            "eval_split": VAL_SPLIT,
            "optimizer": optimizer,
            "epochs": float(point.epochs),
            "augmentation": [] if point.augmentation == "none" else [point.augmentation],
        }
    )
    return recipe.model_dump()


def measure(
    point: Point, seeds: Sequence[int], max_steps_per_epoch: int | None = None
) -> dict[str, Any]:
    """Train ``point`` for every seed in this process; one CSV row (val errors, in %)."""
    recipe = val_recipe(point)
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="repro-digits-sweep-") as tmp,
        digits_field(point.digit_size),
    ):
        result = fit(
            FitConfig(
                recipe=recipe,
                workers=0,
                seeds=list(seeds),
                eval_split=VAL_SPLIT,
                max_steps_per_epoch=max_steps_per_epoch,
                run_name="sweep",
                storage_path=tmp,
                loader_workers=0,
                checkpoint_every_epoch=False,
                channels_last=True,
                torch_threads=1,
            )
        )
    env = result.environment
    if env["eval_split"] != VAL_SPLIT or env["train_split"] != TRAIN_SPLIT:
        raise ReproError(f"the sweep trained on {env['train_split']}, scored {env['eval_split']}.")
    errors = [float(r["top1_error"]) for r in result.seeds]
    losses = [float(r["history"][-1]["loss"]) for r in result.seeds]
    return {
        "digit_size": point.digit_size,
        "epochs": point.epochs,
        "lr": point.lr,
        "augmentation": point.augmentation,
        "train_split": env["train_split"],
        "eval_split": env["eval_split"],
        "train_images": env["train_images"],
        "eval_images": env["eval_images"],
        "seeds": ";".join(str(s) for s in seeds),
        "val_errors": ";".join(f"{e:.4f}" for e in errors),
        "mean_val_error": round(statistics.fmean(errors), 4),
        "sd_val_error": round(statistics.stdev(errors), 4) if len(errors) > 1 else 0.0,
        "diverged": sum(bool(r["diverged"]) for r in result.seeds),
        "last_losses": ";".join(f"{v:.5f}" for v in losses),
        "seconds": round(time.perf_counter() - start, 2),
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ReproError(
                f"{path} has columns {reader.fieldnames}, not this sweep's.",
                "move the file away (or delete it) and rerun the sweep.",
            )
        return list(reader)


def _row_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return Point(
        int(row["digit_size"]), int(row["epochs"]), float(row["lr"]), str(row["augmentation"])
    ).key()


def choose(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The selection rule of the module docstring."""
    if not rows:
        raise ReproError("the sweep has no measured points to choose from.", "run the sweep.")

    def rank(row: dict[str, Any]) -> tuple[float, int, int, float, int]:
        return (
            round(float(row["mean_val_error"]), 4),
            int(row["epochs"]),
            AUGMENTATIONS.index(str(row["augmentation"])),
            float(row["lr"]),
            int(row["digit_size"]),
        )

    return min(rows, key=rank)


def environment() -> dict[str, Any]:
    return {
        "device": "cpu",
        "cpu": cpu_name(),
        "cores": os.cpu_count() or 0,
        "torch_threads": 1,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def split_sizes() -> dict[str, int]:
    return {s: len(digits_split_indices(s)) for s in DIGITS_SPLITS}


def run_sweep(
    points: Sequence[Point],
    seeds: Sequence[int],
    out_dir: Path,
    max_steps_per_epoch: int | None = None,
) -> dict[str, Any]:
    """Measure every point not yet in ``out_dir``/digits_sweep_val.csv (appending each as it
    finishes), then choose among all the CSV's points and write digits_sweep_val.json; returns
    the JSON's content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / CSV_NAME
    done = {_row_key(r) for r in read_rows(csv_path)}
    todo = [p for p in points if p.key() not in done]
    log.info("%d point(s) to measure, %d already in %s", len(todo), len(done), csv_path)
    for i, point in enumerate(todo, 1):
        row = measure(point, seeds, max_steps_per_epoch)
        fresh = not csv_path.exists()
        with csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if fresh:
                writer.writeheader()
            writer.writerow(row)
        log.info(
            "[%d/%d] %s: val error %s -> mean %.2f%% (%.0f s)",
            i,
            len(todo),
            point,
            row["val_errors"],
            row["mean_val_error"],
            row["seconds"],
        )
    rows = read_rows(csv_path)  # every point measured so far, this run's and earlier runs'
    best = choose(rows)
    ranked = sorted(rows, key=lambda r: float(r["mean_val_error"]))
    summary = {
        "what": "LeNet-5 digits recipe chosen on the validation split (test never loaded)",
        "environment": environment(),
        "split_sizes": split_sizes(),
        "train_split": TRAIN_SPLIT,
        "eval_split": VAL_SPLIT,
        "seeds": list(seeds),
        "max_steps_per_epoch": max_steps_per_epoch,
        "values_measured": {
            "digit_size": sorted({int(r["digit_size"]) for r in rows}),
            "epochs": sorted({int(r["epochs"]) for r in rows}),
            "lr": sorted({float(r["lr"]) for r in rows}),
            "augmentation": [a for a in AUGMENTATIONS if a in {r["augmentation"] for r in rows}],
        },
        "points": len(rows),
        "selection": "lowest mean val error; ties: fewer epochs, then none < random_shift < "
        "affine, then lower lr, then smaller digit",
        "chosen": best,
        "best_ten": ranked[:10],
        "seconds_in_csv": round(sum(float(r["seconds"]) for r in rows), 1),
    }
    (out_dir / CSV_NAME.replace(".csv", ".json")).write_text(json.dumps(summary, indent=2))
    return summary


def _numbers(kind: type) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(kind(v) for v in text.split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"default {RESULTS}")
    parser.add_argument("--sizes", type=_numbers(int), default=DIGIT_SIZES)
    parser.add_argument("--epochs", type=_numbers(int), default=EPOCHS)
    parser.add_argument("--lrs", type=_numbers(float), default=LEARNING_RATES)
    parser.add_argument("--augmentations", type=_numbers(str), default=AUGMENTATIONS)
    parser.add_argument("--seeds", type=_numbers(int), default=SEEDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        points = grid(args.sizes, args.epochs, args.lrs, args.augmentations)
        summary = run_sweep(points, args.seeds, args.out_dir)
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    chosen = summary["chosen"]
    print(
        f"chosen on val: digit {chosen['digit_size']} px, {chosen['epochs']} epochs, "
        f"lr {chosen['lr']}, augmentation {chosen['augmentation']}: mean val error "
        f"{chosen['mean_val_error']}% ({chosen['val_errors']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
