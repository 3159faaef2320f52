"""`repro eval`: score detections (VOC AP, COCO AP) and classifiers (top-1/top-5 error).

Results go to stdout as JSON and nothing else does; progress, warnings and errors go to stderr.
Heavy imports happen inside the command functions, so `repro --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from repro.data.problems import Problems
from repro.errors import DataError, ReproError
from repro.evaluation.detections_io import InvalidDetections, read_voc_results, voc_result_files

log = logging.getLogger("repro.evaluation")

DETECTIONS_EPILOG = """examples:
  repro eval detections --metric voc07 --gt data/VOCdevkit/VOC2007 --detections results/
  repro eval detections --metric voc07 --gt data/VOCdevkit --detections results/comp4_det_test_
  repro eval detections --metric voc2010 --gt data/VOCdevkit/VOC2012 --split val \\
      --detections results/ --classes car,person
  repro eval detections --metric coco --gt annotations/instances_val2017.json \\
      --detections detections_val2017_results.json

VOC: --gt is a VOC year folder (Annotations/, ImageSets/Main/<split>.txt) or a folder holding
exactly one VOC* folder (directly or in VOCdevkit/); --detections is the directory of devkit
result files <prefix><class>.txt (lines `image_id score x1 y1 x2 y2`, 1-based pixel
coordinates) or the prefix itself. voc07 is VOC2007's 11-point AP, voc2010 the all-point AP
of VOC2010-2012; both at IoU > 0.5, difficult objects ignored, exactly as the devkit's
voc_eval.py.
COCO: --gt is an instances JSON, --detections a results JSON; scored by pycocotools' COCOeval and
cross-checked with faster-coco-eval.
"""

CLASSIFIER_EPILOG = """examples:
  repro eval classifier alexnet --weights alexnet.pt --data /data/imagenet --crops 10
  repro eval classifier resnet50 --weights r50.pt --data /data/imagenet --device cuda \\
      --batch-size 128
  repro eval classifier vgg_d --weights vgg16.pt --data /data/imagenet --labels val_labels.txt \\
      --limit 5000
  repro eval classifier tf_cnn --weights tf_cnn.pt --data /usr/share/datasets/fashion-mnist

Errors are in percent. --crops 1 scores the centre crop; --crops 10 averages the softmax over
the four corner crops, the centre crop and their mirrors (AlexNet's protocol). An MNIST-format
set is scored on its whole 28x28 images (padded or resized to --crop, normalised by the set's own
statistics), as its benchmark tables are; which set it is, its content says. Unreadable images
are counted and skipped; a batch that runs out of memory is retried at half the size.
"""


def resolve_voc_root(gt: Path) -> Path:
    """A VOC year folder, or the one VOC<year> folder inside ``gt`` or inside ``gt/VOCdevkit``
    (repro.data's find_voc_root), with errors that name --gt."""
    from repro.data.verify_detection import find_voc_root  # the readers: off `repro --help`

    if not gt.is_dir():
        raise ReproError(
            f"--gt {gt} is not a directory.",
            "pass a VOC year folder such as VOCdevkit/VOC2007 (for --metric coco: a JSON file).",
        )
    try:
        return find_voc_root(gt, None)
    except DataError as exc:
        raise ReproError(
            f"--gt {exc.cause}",
            "pass one VOC year folder such as VOCdevkit/VOC2007 (Annotations/, ImageSets/Main/).",
        ) from None


def _class_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ReproError(f"--classes {text!r} names no class.", "pass e.g. --classes car,person.")
    return names


def _eval_voc(args: argparse.Namespace) -> dict[str, Any]:
    from repro.data.voc import load_split, read_split, voc_classes
    from repro.evaluation.voc import evaluate_voc, metric_uses_07

    metric_uses_07(args.metric)
    root = resolve_voc_root(Path(args.gt))
    classes = _class_list(args.classes) or voc_classes(root)
    problems = Problems()
    annotations = load_split(root, args.split, problems)
    invalid = InvalidDetections()
    detections = read_voc_results(args.detections, classes, invalid)
    split_ids = set(read_split(root, args.split))
    files = voc_result_files(args.detections, classes)
    # Images of the split whose annotation was skipped as broken: their detections cannot be
    # scored; they are dropped and counted (ids outside the split stay an error).
    unscored = split_ids - set(annotations)
    dropped = 0
    for cls, dets in detections.items():
        outside = sorted({d[0] for d in dets} - split_ids)
        if outside:
            shown = ", ".join(repr(i) for i in outside[:5]) + (" ..." if len(outside) > 5 else "")
            raise ReproError(
                f"{files[cls]}: {len(outside)} image id(s) not in split {args.split!r} of {root} "
                f"({len(split_ids)} images): {shown}.",
                "evaluate against the split the detections were made on (--split), and write "
                "image ids as in ImageSets/Main/<split>.txt (e.g. 000001, no extension).",
            )
        kept = [d for d in dets if d[0] not in unscored]
        dropped += len(dets) - len(kept)
        detections[cls] = kept
    result = evaluate_voc(annotations, detections, metric=args.metric, classes=classes)
    if len(problems):
        log.warning(
            "%s: %d dataset problem(s) %s; %d detection(s) on skipped images dropped",
            root,
            len(problems),
            problems.counts(),
            dropped,
        )
    return {
        **result,
        "gt": str(root),
        "split": args.split,
        "detections_path": str(args.detections),
        "dataset_problems": problems.counts(),
        "detections_dropped": dropped,
        **invalid.as_output(),
    }


def cmd_detections(args: argparse.Namespace) -> int:
    if args.metric == "coco":
        from repro.evaluation.coco import evaluate_coco

        if args.classes:
            raise ReproError(
                "--classes applies to VOC metrics only.",
                "drop --classes; COCO categories come from the --gt JSON.",
            )
        scores = evaluate_coco(Path(args.gt), Path(args.detections), cross_check=args.cross_check)
        result = {"metric": "coco", "gt": args.gt, "detections_path": args.detections, **scores}
    else:
        result = _eval_voc(args)
    print(json.dumps(result, indent=2))
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    from repro.evaluation import classifier_command  # torch and the models: off `repro --help`

    return classifier_command.run(args)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score detections (VOC/COCO AP) or a classifier (top-1/top-5 error)",
        description="Evaluate with the official protocols; results print as JSON on stdout.",
    )
    eval_sub = p.add_subparsers(dest="eval_command", required=True, metavar="WHAT")

    d = eval_sub.add_parser(
        "detections",
        help="mAP of detection results: VOC2007 11-point, VOC2010+ all-point, or COCO",
        description="Score detection results against ground truth and print per-class AP and\n"
        "the mean as JSON.",
        epilog=DETECTIONS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument(
        "--metric",
        required=True,
        choices=["voc07", "voc2010", "coco"],
        help="voc07: VOC2007 11-point AP; voc2010: all-point AP (VOC2010-2012); coco: COCO "
        "AP@[.5:.95] and the rest of COCOeval's summary",
    )
    d.add_argument("--gt", required=True, metavar="PATH", help="VOC root, or COCO instances JSON")
    d.add_argument(
        "--detections",
        required=True,
        metavar="PATH",
        help="VOC: results directory or prefix; COCO: results JSON",
    )
    d.add_argument("--split", default="test", help="VOC split (ImageSets/Main/<split>.txt)")
    d.add_argument("--classes", help="VOC: comma-separated classes (default: the dataset's)")
    d.add_argument(
        "--no-cross-check",
        dest="cross_check",
        action="store_false",
        help="COCO: skip the faster-coco-eval cross-check",
    )
    d.set_defaults(func=cmd_detections)

    c = eval_sub.add_parser(
        "classifier",
        help="top-1/top-5 error of a registered classifier with trained weights",
        description="Build MODEL with the dataset's class count, load --weights, and print\n"
        "its top-1 and top-5 error on an ImageNet-style split or an MNIST-format set as JSON.",
        epilog=CLASSIFIER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("model", metavar="MODEL", help="registered classifier (see `repro models`)")
    c.add_argument("--weights", required=True, metavar="PATH", help="state dict file (.pt)")
    c.add_argument(
        "--data",
        required=True,
        metavar="ROOT",
        help="ImageNet-style dataset root, or a folder of MNIST-format IDX files (Fashion-MNIST, "
        "MNIST; gzipped or not, flat or torchvision's <set>/raw)",
    )
    c.add_argument(
        "--split", help="split folder (default val); an MNIST-format set's train or test (default)"
    )
    c.add_argument("--labels", metavar="PATH", help="label file for a flat split folder")
    c.add_argument(
        "--resize", type=int, metavar="N", help="shorter side before cropping (default crop/0.875)"
    )
    c.add_argument(
        "--crop", type=int, metavar="N", help="crop size (default: the model's input size)"
    )
    c.add_argument("--crops", type=int, choices=[1, 10], default=1, help="1 (centre) or 10")
    c.add_argument(
        "--batch-size", type=int, metavar="N", default=64, help="images per batch (default 64)"
    )
    c.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="default cpu")
    c.add_argument(
        "--workers", type=int, metavar="N", default=0, help="DataLoader workers (default 0)"
    )
    c.add_argument("--limit", type=int, metavar="N", help="evaluate N images spread over the split")
    c.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    c.set_defaults(func=cmd_classifier)
