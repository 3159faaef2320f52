"""Seeded fuzz of every reader, through the commands users run.

For each family, a valid input is made once (the paper YAML, a synthetic dataset in the real
format, a detections file, a state dict), then mutated N times (bytes truncated, flipped,
inserted, deleted or replaced; lines dropped, doubled or swapped; values swapped for ones of
the wrong type or range; whole files of random bytes; format-aware damage where it matters:
image headers claiming huge sizes, IDX headers with wrong counts, pickles that run code, CSV
fields holding paths or NaN, YAML alias bombs, nesting and repeated keys; benchmarks/
fuzz_mutators.py). Each mutant is put where the valid file was, beside the valid files of the
same input, and the command is run in this process through `repro.cli.main`; a reader with no
command of its own (measurement CSVs, spooled MLflow entries) is called through its public
entry point, its ReproError read as exit 2 and a warning it logs as exit 1. Every run ends as
one of:

- named: exit 2 with an `error:` paragraph naming the mutated file;
- skip: exit 1, the mutated file named among the counted problems, the rest checked;
- accepted: exit 0 (the mutant is still a valid input);
- unnamed: exit 1/2 without naming the file (a finding: the user cannot tell what to fix);
- traceback: an exception reached the user (a finding).

    python -m benchmarks.fuzz                 # 1000 inputs per family, benchmarks/results/fuzz.csv
    python -m benchmarks.fuzz --inputs 50 --family voc_xml --show traceback
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import pickle
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.fuzz_mutators import BINARY, CSV, IDX, IMAGE, JSON, TEXT, YAML, Mutator
from repro import cli
from repro.errors import ReproError
from repro.files import atomic_write
from repro.report.content import read_measurements
from repro.tracking import spool

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = ("named", "skip", "accepted", "unnamed", "traceback")
COLUMNS = ("family", "inputs", *OUTCOMES, "seconds", "seed", "python", "torch")


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _weights_mutators(marker: Path) -> list[Mutator]:
    def code(rng: random.Random, data: bytes) -> bytes:
        import torch

        buf = io.BytesIO()
        if rng.random() < 0.5:
            torch.save({"state_dict": _RunsCode(str(marker))}, buf)
            return buf.getvalue()
        return pickle.dumps(_RunsCode(str(marker)))

    def wrong_state(rng: random.Random, data: bytes) -> bytes:
        import torch

        state = torch.load(io.BytesIO(data), weights_only=True)
        keys = list(state)
        k = rng.choice(keys)
        op = rng.randrange(5)
        if op == 0:
            del state[k]
        elif op == 1:
            state["extra." + k] = state[k]
        elif op == 2:
            state[k] = torch.zeros(*(s + 1 for s in state[k].shape))
        elif op == 3:
            state[k] = torch.full_like(state[k], float("nan"))
        else:
            state = rng.choice([[1, 2], "weights", 3, {"model": state}, {"state_dict": 5}])
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    return [*BINARY, code, wrong_state, wrong_state]


# --- families ----------------------------------------------------------------------------------


@dataclass
class Family:
    name: str
    target: Path  # the file each mutant replaces
    argv: list[str]
    mutators: list[Mutator]
    main: Callable[[list[str]], object] = cli.main  # the command, or a reader called as one
    pristine: bytes = b""
    after: Callable[[], str] = field(default=lambda: "")  # a finding beyond the exit status
    baseline: object = 0  # the pristine input's exit status


def _reader(read: Callable[[], object]) -> Callable[[list[str]], int]:
    """A reader called through its public entry point as a command would call it: exit 0 when
    it returns, 1 when it logged a warning (a counted skip), 2 with the error's paragraph when it
    raised a ReproError; any other exception reaches run_one as a traceback."""

    def main(argv: list[str]) -> int:
        logged = io.StringIO()
        handler = logging.StreamHandler(logged)
        handler.setLevel(logging.WARNING)
        logging.getLogger().addHandler(handler)
        try:
            read()
        except ReproError as exc:
            print(exc.paragraph(), file=sys.stderr)
            return 2
        finally:
            logging.getLogger().removeHandler(handler)
            print(logged.getvalue(), end="", file=sys.stderr)
        return 1 if logged.getvalue() else 0

    return main


def _synth(kind: str, out: Path, *extra: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["data", "synth", kind, "--out", str(out), "--images", "2", *extra]) == 0


def families(work: Path) -> list[Family]:
    """Every family's valid input, made under ``work``."""
    made: list[Family] = []
    manifest = str(work / "manifest.json")
    verify = ["data", "verify"]
    tail = ["--manifest", manifest, "--quiet", "--workers", "1"]

    papers = work / "papers"
    papers.mkdir()
    shutil.copy(REPO / "repro/papers/lenet.yaml", papers / "lenet.yaml")
    shutil.copy(REPO / "repro/papers/alexnet.yaml", papers / "alexnet.yaml")
    made.append(Family("paper_yaml", papers / "alexnet.yaml",
                       ["papers", "--papers-dir", str(papers)], YAML))  # fmt: skip

    params = work / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    made.append(Family("params_yaml", params, ["run", "lenet", "--plan", "--params", str(params)],
                       YAML))  # fmt: skip

    measurements = work / "measurements"
    measurements.mkdir()
    for name in ("lenet.csv", "lenet.json", "alexnet.csv", "alexnet.json"):
        shutil.copy(REPO / "reports" / "measurements" / name, measurements / name)
    made.append(Family("measurement_csv", measurements / "lenet.csv", [], CSV,
                       main=_reader(lambda: read_measurements(measurements))))  # fmt: skip

    spooled, uri = work / "spool", f"sqlite:///{work / 'mlflow.db'}"
    entry = spool.save_paper(uri, "lenet", [], {"device": "cpu"}, "s1", "store away", spooled)
    fixed = {"spooled_at": 0.0, "command": "repro run lenet"}  # the same bytes on every run
    entry.write_text(json.dumps({**json.loads(entry.read_text()), **fixed}, indent=2))
    no_store = work / "no-store"  # a file where a store's folder would be: every log fails
    no_store.write_text("")
    replay = _reader(lambda: spool.replay(f"file://{no_store}", spooled))
    made.append(Family("spool_entry", entry, [], JSON, main=replay))

    _synth("voc", work / "voc")
    voc = work / "voc" / "VOCdevkit" / "VOC2007"
    made.append(Family("voc_xml", voc / "Annotations" / "000002.xml",
                       [*verify, "voc2007", "--root", str(voc), *tail], TEXT))  # fmt: skip

    _synth("coco", work / "coco")
    coco = work / "coco"
    made.append(Family("coco_instances", coco / "annotations" / "instances_val2017.json",
                       [*verify, "coco", "--root", str(coco), *tail], JSON))  # fmt: skip

    gt = json.loads((coco / "annotations" / "instances_val2017.json").read_text())
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
         "score": 0.9 - 0.1 * i}
        for i, a in enumerate(gt["annotations"])
    ]  # fmt: skip
    results_file = work / "coco_results.json"
    results_file.write_text(json.dumps(results))
    made.append(Family("coco_results", results_file,
                       ["eval", "detections", "--metric", "coco", "--gt",
                        str(coco / "annotations" / "instances_val2017.json"),
                        "--detections", str(results_file), "--no-cross-check"], JSON))  # fmt: skip

    dets = work / "voc_dets"
    dets.mkdir()
    classes = (voc / "classes.txt").read_text().split()
    test_id = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    for c in classes:
        lines = [f"{test_id} 0.9 10 10 50 50\n", f"{test_id} 0.4 5 5 20 30\n"]
        (dets / f"comp4_det_test_{c}.txt").write_text("".join(lines))
    made.append(Family("voc_detections", dets / f"comp4_det_test_{classes[0]}.txt",
                       ["eval", "detections", "--metric", "voc07", "--gt", str(voc),
                        "--detections", str(dets)], TEXT))  # fmt: skip

    _synth("imagefolder", work / "images")
    images = work / "images"
    made.append(Family("images", images / "train" / "circle" / "00001.jpg",
                       [*verify, "imagefolder", "--root", str(images), *tail], IMAGE))  # fmt: skip

    _synth("mnist", work / "mnist")
    mnist = work / "mnist"
    made.append(Family("mnist_idx", mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte",
                       [*verify, "mnist", "--root", str(mnist), *tail], IDX))  # fmt: skip

    _synth("sun397", work / "sun")
    sun = work / "sun" / "SUN397"
    made.append(Family("sun397_lists", sun / "Partitions" / "Testing_01.txt",
                       [*verify, "sun397", "--root", str(sun), *tail], TEXT))  # fmt: skip

    inet = work / "imagenet"
    shutil.copytree(images / "train", inet / "train")
    (inet / "val").mkdir()
    label_lines = []
    for i, src in enumerate(sorted((images / "val").glob("*/*.jpg"))):
        shutil.copy(src, inet / "val" / f"val_{i:03d}.jpg")
        label_lines.append(f"val_{i:03d}.jpg {src.parent.name}\n")
    labels = work / "val_labels.txt"
    labels.write_text("".join(label_lines))
    made.append(Family("imagenet_labels", labels,
                       [*verify, "imagenet", "--root", str(inet), "--labels", str(labels),
                        *tail], TEXT))  # fmt: skip

    import torch

    from repro.models import build_model

    weights = work / "lenet5.pt"
    torch.save(build_model("lenet5", num_classes=3).state_dict(), weights)
    digits = work / "digits"
    _synth("imagefolder", digits, "--size", "32")
    marker = work / "code-ran"
    made.append(Family("weights", weights,
                       ["eval", "classifier", "lenet5", "--weights", str(weights), "--data",
                        str(digits), "--limit", "2", "--no-progress"],
                       _weights_mutators(marker),
                       after=lambda: "a pickle ran code" if marker.exists() else ""))  # fmt: skip
    for fam in made:
        fam.pristine = fam.target.read_bytes()
    return made


# --- running -----------------------------------------------------------------------------------


def run_one(fam: Family, data: bytes) -> tuple[str, str]:
    """Put ``data`` in place of the family's file, run its command; (outcome, output)."""
    fam.target.write_bytes(data)
    buf = io.StringIO()
    code: object = None
    crashed = ""
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            code = fam.main(list(fam.argv))
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # noqa: BLE001 - what would reach the user as a traceback
            crashed = traceback.format_exc()
            del exc
    out = buf.getvalue()
    finding = fam.after()
    if crashed or finding or "Traceback (most recent call last)" in out:
        return "traceback", crashed + finding + out
    named = fam.target.name in out
    if code == 0 or (code == fam.baseline and not named):
        return "accepted", out  # as valid as the pristine input (synthetic sets count low)
    if code == 2 and named and "error:" in out:
        return "named", out
    if code == 1 and named:
        return "skip", out
    return "unnamed", f"exit {code}\n{out}"


def fuzz_family(fam: Family, inputs: int, seed: int, show: str | None = None) -> Counter[str]:
    rng = random.Random(f"{seed}:{fam.name}")
    counts: Counter[str] = Counter()
    outcome, out = run_one(fam, fam.pristine)
    if outcome in ("traceback", "named"):
        raise RuntimeError(f"the pristine {fam.name} input fails: {out[-2000:]}")
    fam.baseline = 0 if outcome == "accepted" else 1  # 1: problems the synthetic set has
    try:
        for i in range(inputs):
            mutate = rng.choice(fam.mutators)
            data = mutate(rng, fam.pristine)
            outcome, out = run_one(fam, data)
            counts[outcome] += 1
            if show and outcome == show:
                print(f"--- {fam.name} #{i} {mutate.__name__}: {outcome}\n{out[-1500:]}")
    finally:
        fam.target.write_bytes(fam.pristine)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1000, help="mutants per family (1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", action="append", help="only these families (repeatable)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/fuzz.csv"))
    parser.add_argument("--show", choices=OUTCOMES, help="print the output of each such run")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    rows = []
    with tempfile.TemporaryDirectory(prefix="repro-fuzz-") as tmp:
        for fam in families(Path(tmp)):
            if args.family and fam.name not in args.family:
                continue
            began = time.perf_counter()
            counts = fuzz_family(fam, args.inputs, args.seed, args.show)
            row = {"family": fam.name, "inputs": args.inputs, **{o: counts[o] for o in OUTCOMES},
                   "seconds": round(time.perf_counter() - began, 1), "seed": args.seed,
                   "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip
            rows.append(row)
            print(", ".join(f"{k} {v}" for k, v in row.items()), file=sys.stderr)

    def write(fh) -> None:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)

    atomic_write(args.out, write)
    bad = sum(r["traceback"] + r["unnamed"] for r in rows)
    print(f"wrote {args.out}: {sum(r['inputs'] for r in rows)} inputs, {bad} finding(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
