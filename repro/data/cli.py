"""`repro data`: verify datasets, write synthetic ones, print the datasets-table row, time the
input pipeline. Heavy imports happen inside the command functions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from repro.config import load_settings
from repro.data.roots import VERIFIABLE_DATASETS, data_root
from repro.data.verify_report import VerifyReport
from repro.errors import ReproError

SYNTH_KINDS = ("imagefolder", "voc", "coco", "sun397", "mnist", "all")

EPILOG = """examples:
  repro data verify voc2007 --root /data/VOCdevkit/VOC2007
  repro data verify imagenet --root /data/imagenet --labels /data/imagenet/val_labels.txt
  repro data verify coco --root /data/coco --manifest reports/datasets/coco.json --no-decode
  repro data verify sun397 --root /data/SUN397
  repro data verify fashion_mnist   (default root /usr/share/datasets/fashion-mnist)
  repro data synth all --out /tmp/synth --images 200
  repro data stats voc2010 --root /data/VOCdevkit/VOC2010
  repro data throughput --root /data/imagenet/train --workers 8 --device cuda --out tp.csv

The dataset root defaults to params.yaml data.<name>, overridden by REPRO_DATA_<NAME>.
"""


def _root(args: argparse.Namespace, name: str) -> Path:
    if args.root:
        return Path(args.root)
    root = data_root(name, load_settings(getattr(args, "params", None)).data_roots)
    if not root:
        raise ReproError(
            f"no root for dataset {name}.",
            f"pass --root, set data.{name} in params.yaml, or set REPRO_DATA_{name.upper()}.",
        )
    return Path(root)


def _cmd_verify(args: argparse.Namespace) -> int:
    from repro.data.verify import verify_dataset

    report = verify_dataset(
        args.name,
        _root(args, args.name),
        labels=Path(args.labels) if args.labels else None,
        decode=not args.no_decode,
        progress=not args.quiet,
        workers=args.workers,
    )
    manifest = Path(args.manifest or f"reports/datasets/{args.name}.json")
    report.write_manifest(manifest)
    print(
        f"{report.name} at {report.root}: {len(report.classes)} classes"
        + (" (the real class list)" if report.real_classes else "")
    )
    for split, counts in report.splits.items():
        expected = report.expected.get(split)
        extra = f" (expected {expected})" if expected is not None else ""
        text = ", ".join(f"{k} {v}" for k, v in counts.items())
        print(f"  {split}: {text}{extra}")
    _print_content(report)
    if args.no_decode:
        print("  images not decoded (--no-decode)")
    else:
        print(f"  decoded {report.decoded} images")
    if report.ok:
        print("ok: no problems found")
    else:
        n = len(report.problems)
        print(f"{n} problem{'' if n == 1 else 's'}:")
        for line in report.problems.summary().splitlines():
            print(f"  {line}")
    print(f"manifest: {manifest} (index sha256 {report.index_sha256[:16]}...)")
    return 0 if report.ok else 1


def _print_content(report: VerifyReport) -> None:
    """An MNIST-format set's class names, and per split its content digest against the
    published one, pixel statistics and per-class counts."""
    if not report.content:
        return
    print(f"  classes: {', '.join(report.classes)}")
    for split, c in report.content.items():
        published = c["published_sha256"]
        if not published:
            what = "no published digest recorded"
        elif c["sha256"] == published:
            what = "the published files"
        else:
            what = "NOT the published files"
        print(
            f"  {split} content sha256 {c['sha256'][:16]}... ({what}); pixel mean "
            f"{c['pixel_mean']:.4f}, std {c['pixel_std']:.4f}"
        )
        print(f"    per class: {', '.join(f'{k} {v}' for k, v in c['per_class'].items())}")


def _cmd_synth(args: argparse.Namespace) -> int:
    from repro.data import synth

    out, n, seed = Path(args.out), args.images, args.seed
    half = max(1, n // 2)
    small, large = args.size or 32, (args.size or 96,) * 2
    kinds = SYNTH_KINDS[:-1] if args.kind == "all" else (args.kind,)
    for kind in kinds:
        target = out / kind if args.kind == "all" else out
        if kind == "imagefolder":
            split = {"train": n, "val": half}
            path = synth.write_image_folder(target, per_split=split, size=small, seed=seed)
            what = f"{n} train / {half} val images per class"
        elif kind == "voc":
            split = {"trainval": n, "test": half}
            path = synth.write_voc(target, year=args.year, splits=split, size=large, seed=seed)
            what = f"{n} trainval / {half} test images"
        elif kind == "mnist":
            path = synth.write_mnist(target, per_split={"train": n, "test": half}, seed=seed)
            what = f"{n} train / {half} test digits, IDX files in MNIST/raw"
        elif kind == "sun397":
            path = synth.write_sun397(
                target,
                per_class=2 * half,
                train_per_class=half,
                test_per_class=half,
                size=small,
                seed=seed,
            )
            what = f"2 partitions of {half} train / {half} test images per class"
        else:
            split = {"train2017": n, "val2017": half}
            path = synth.write_coco(target, splits=split, size=large, seed=seed)
            what = f"{n} train2017 / {half} val2017 images"
        print(f"{kind}: {path} ({what})")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from repro.data.stats import dataset_stats
    from repro.data.verify import verify_dataset

    report = verify_dataset(args.name, _root(args, args.name), decode=False, progress=False)
    stats = dataset_stats(report, args.protocol_split)
    print(json.dumps(stats, indent=2))
    if not report.ok:
        print(
            f"warning: {len(report.problems)} problems; run `repro data verify {args.name}`",
            file=sys.stderr,
        )
    return 0


def _cmd_throughput(args: argparse.Namespace) -> int:
    from repro.data.throughput import measure_decode_modes, write_rows

    flags = ("workers", "batch_size", "input_size", "batches", "device")
    rows = measure_decode_modes(Path(args.root), **{k: getattr(args, k) for k in flags})
    for r in rows:
        per_core = r["images_per_s_per_core"]
        core_text = f", {per_core:.1f}/s per core" if per_core else ""
        print(
            f"{r['device']} {r['mode']} (workers {r['workers']}): {r['images_per_s']:.1f} "
            f"images/s{core_text} over {r['images']} images"
        )
    if args.out:
        print(f"rows appended to {write_rows(rows, Path(args.out))}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser(
        "data",
        help="verify datasets, write synthetic ones, dataset statistics, input throughput",
        description="Dataset tools for ImageNet-1k, PASCAL VOC 2007/2010/2012, COCO 2014/2017, "
        "SUN-397, MNIST and Fashion-MNIST.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p = data_sub.add_parser(
        "verify",
        help="check a dataset in one pass and write its manifest",
        description="Check splits and counts (against the published ones when the class list is "
        "the real one), class lists, annotations (ids, boxes inside the image, categories) and "
        "decode every image. Every problem is reported, counted by kind. Exit code 0: no "
        "problems; 1: problems found; 2: the dataset cannot be read at all.",
    )
    p.add_argument("name", choices=VERIFIABLE_DATASETS, help="dataset kind")
    p.add_argument("--root", help="dataset root (default: params.yaml data.NAME / REPRO_DATA_NAME)")
    p.add_argument(
        "--labels",
        help="ImageNet flat val/: label file (`<file> <wnid or index>` "
        "lines, or LOC_val_solution.csv)",
    )
    p.add_argument(
        "--manifest",
        help="manifest JSON to write (default reports/datasets/NAME.json, "
        "where the DVC stage `datasets` writes it)",
    )
    p.add_argument("--no-decode", action="store_true", help="do not decode the images")
    p.add_argument("--workers", type=int, help="decoding threads (default min(8, CPUs))")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--params", help="params file (default: ./params.yaml if present)")
    p.set_defaults(func=_cmd_verify)

    p = data_sub.add_parser(
        "synth",
        help="write synthetic shape datasets in the real formats",
        description="Write images of filled shapes (circle, square, triangle) in the ImageFolder, "
        "PASCAL VOC (devkit XML), COCO (instances JSON) or SUN-397 (ClassName.txt, Partitions/) "
        "layout. Deterministic for a seed.",
    )
    p.add_argument("kind", choices=SYNTH_KINDS, help="format; all writes OUT/<kind> for each")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--images",
        type=int,
        default=100,
        help="train images (per class for imagefolder and sun397); the val/test split gets half "
        "(default 100)",
    )
    p.add_argument(
        "--size", type=int, help="image side (default 32 imagefolder/sun397, 96 voc/coco)"
    )
    p.add_argument("--year", default="2007", help="VOC year of the folder name (default 2007)")
    p.set_defaults(func=_cmd_synth)

    p = data_sub.add_parser(
        "stats",
        help="the detection-datasets table row of a dataset, as JSON",
        description="Classes, images, objects and objects per image over the protocol splits "
        "(default: VOC trainval, COCO train2014+val2014, ImageNet train), and per split.",
    )
    p.add_argument("name", choices=VERIFIABLE_DATASETS, help="dataset kind")
    p.add_argument("--root", help="dataset root (default: params.yaml data.NAME)")
    p.add_argument("--protocol-split", help="splits to count, joined by '+' (e.g. train+val)")
    p.add_argument("--params", help="params file (default: ./params.yaml if present)")
    p.set_defaults(func=_cmd_stats)

    p = data_sub.add_parser(
        "throughput",
        help="images/s of the training input pipeline and of JPEG decoding",
        description="Time the ImageNet training input (PIL decode, RandomResizedCrop, flip, "
        "ToTensor, normalise) through a DataLoader, and torchvision.io.decode_jpeg on the CPU "
        "(and batched on the GPU with --device cuda).",
    )
    p.add_argument("--root", required=True, help="folder of images (searched recursively)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader processes (default 1)")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda adds the GPU decode row (needs a GPU)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="default 64")
    p.add_argument("--input-size", type=int, default=224, help="crop side (default 224)")
    p.add_argument("--batches", type=int, default=20, help="timed batches (default 20)")
    p.add_argument("--out", help="CSV to append the rows to")
    p.set_defaults(func=_cmd_throughput)
