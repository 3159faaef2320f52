"""`verify_dataset`: one pass over a dataset that reports every problem, and its manifest.

A pass checks the known shape (splits, per-split counts against the published ones when the
class list is the real one, class lists), annotation consistency, and decodes every image.
Nothing raises on a bad item: each is a `Problem`, counted by kind. Only a missing root, or a
root that is not the named dataset at all, raises DataError.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from repro.data import mnist, sun397
from repro.data.image_files import class_folders
from repro.data.imagenet import imagenet_classes, imagenet_split
from repro.data.roots import VERIFIABLE_DATASETS
from repro.data.scan import Found, Scan
from repro.data.stats import dataset_stats
from repro.data.verify_detection import find_voc_root, verify_coco, verify_voc
from repro.data.verify_report import VerifyReport
from repro.errors import DataError

IMAGENET_EXPECTED = {"train": 1281167, "val": 50000}
IMAGENET_CLASSES = 1000
_WNID = re.compile(r"^n\d{8}$")


def verify_dataset(
    name: str,
    root: Path | str,
    *,
    labels: Path | None = None,
    decode: bool = True,
    progress: bool = True,
    workers: int | None = None,
) -> VerifyReport:
    """Verify a dataset in one pass (see the module docstring). `labels`: the flat ImageNet
    validation label file. `workers`: decoding threads (default min(8, CPUs))."""
    name = name.lower()
    if name not in VERIFIABLE_DATASETS:
        raise DataError(
            f"unknown dataset {name!r}.", f"name one of {', '.join(VERIFIABLE_DATASETS)}."
        )
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset root {root} does not exist.",
            f"pass the {name} folder (--root, params.yaml data.{name} or "
            f"REPRO_DATA_{name.upper()}).",
        )
    if name.startswith("voc"):
        year = name[3:] or None
        voc_root = find_voc_root(root, year)
        if year and re.fullmatch(r"VOC\d{4}", voc_root.name) and voc_root.name != f"VOC{year}":
            raise DataError(f"{voc_root} is not VOC{year}.", f"pass the VOC{year} folder.")
        scan = Scan(voc_root)
        found = verify_voc(scan, voc_root, year)
    elif name == "coco":
        scan = Scan(root)
        found = verify_coco(scan, root)
    elif name in mnist.SETS:
        folder = mnist.idx_folder(root, name)
        scan = Scan(folder)
        found = verify_idx(scan, folder, name)
    elif name == "sun397":
        sun_root = sun397.find_root(root)
        scan = Scan(sun_root)
        found = verify_sun397(scan, sun_root)
    else:
        scan = Scan(root)
        found = verify_image_folder(scan, root, name, labels)
    for split, expected in found.expected.items():
        got = found.splits.get(split, {}).get("images")
        if got is not None and got != expected:
            scan.problems.add(
                "count-mismatch",
                found.count_paths.get(split, str(scan.root / split)),
                f"{split} has {got} images; the real {name} {split} has {expected}",
            )
    decoded = scan.decode_all(progress=progress, workers=workers) if decode else 0
    decoded += sum(found.splits[s]["images"] for s in found.content or {})  # IDX arrays
    report = VerifyReport(
        name=name,
        root=scan.root,
        splits=found.splits,
        classes=list(found.classes),
        problems=scan.problems,
        expected=dict(found.expected),
        real_classes=found.real_classes,
        decoded=decoded,
        index_sha256=scan.index_sha256(),
        index_files=len(scan.index),
        content=dict(found.content or {}),
    )
    report.stats = dataset_stats(report)
    return report


def _classified(images: int, classes: int) -> dict[str, int]:
    """A classification split's counts (no objects)."""
    return {"images": images, "objects": 0, "classes": classes}


def verify_image_folder(scan: Scan, root: Path, name: str, labels: Path | None) -> Found:
    """ImageNet (train/ and val/ required; val may be flat with labels) or any ImageFolder
    (every sub-folder of root is a split)."""
    if name == "imagenet":
        required = ["train", "val"]
        splits_present = [s for s in required if (root / s).is_dir()]
    else:
        required = []
        splits_present = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not splits_present:
            scan.problems.add("missing-split", str(root), "no split folders (ROOT/<split>/)")
    try:
        classes = imagenet_classes(root, "val", labels)
    except DataError as exc:
        scan.problems.add("missing-label", str(labels or root), exc.cause)
        classes = []
    if not classes and name == "imagefolder":
        classes = sorted({c for s in splits_present for c in class_folders(root / s)})
    splits: dict[str, dict[str, int]] = {}
    for split in sorted(set(required) | set(splits_present)):
        folder = root / split
        if split not in splits_present:
            scan.problems.add("missing-split", str(folder), f"the {split} folder is absent")
            continue
        try:
            samples = imagenet_split(
                root, split, labels if split == "val" else None, scan.problems, classes=classes
            )
        except DataError as exc:
            scan.problems.add("missing-label", str(folder), exc.cause)
            continue
        if not samples:
            scan.problems.add("empty-split", str(folder), "no images")
        for path, _ in samples:
            scan.add_image(split, path)
        splits[split] = _classified(len(samples), len({label for _, label in samples}))
    real = name == "imagenet" and bool(classes) and all(_WNID.match(c) for c in classes)
    if real and len(classes) != IMAGENET_CLASSES:
        scan.problems.add(
            "count-mismatch",
            str(root / "train"),
            f"{len(classes)} classes; ImageNet-1k has {IMAGENET_CLASSES}",
        )
    expected = {s: n for s, n in IMAGENET_EXPECTED.items() if s in splits} if real else {}
    return Found(classes, real, splits, expected, {s: str(root / s) for s in splits})


def verify_idx(scan: Scan, folder: Path, name: str) -> Found:
    """An MNIST-format set (repro.data.mnist): each split's image and label files present and
    decoded (gzipped or not), their headers consistent with their length and with each other,
    labels 0-9; counts against the published 60,000 / 10,000; the content digest against the
    published files' (a content-mismatch problem when it differs; DataError when it is another
    dataset's); per-class counts and pixel statistics. The images are arrays, not files."""
    spec = mnist.SETS[name]
    splits: dict[str, dict[str, int]] = {}
    paths: dict[str, str] = {}
    content: dict[str, dict[str, Any]] = {}
    for split, names in mnist.FILES.items():
        files = [mnist.file_in(folder, base) for base in names]
        missing = [base for base, path in zip(names, files, strict=True) if path is None]
        if missing:
            detail = f"{spec.title}'s {split} split needs {' and '.join(missing)} (or .gz)"
            scan.problems.add("missing-split", str(folder / missing[0]), detail)
            continue
        for path in filter(None, files):
            scan.add_file(split, path)
        try:
            data = mnist.load_split(folder, split, name)
        except mnist.IdxError as exc:
            scan.problems.add(exc.kind, str(exc.path), exc.detail)
            continue
        digest = mnist.content_sha256(data.images, data.labels)
        mnist.check_identity(name, split, data, digest)
        published = spec.digests.get(split)
        if published and digest != published:
            other = mnist.published_as(digest)
            scan.problems.add(
                "content-mismatch",
                str(data.files[0]),
                f"the decoded {split} content (sha256 {digest[:16]}...) is not the published "
                f"{spec.title} {split} split's ({published[:16]}...)"
                + (f"; it is the published {other[1]} split" if other else ""),
            )
        counts = np.bincount(data.labels, minlength=len(spec.classes))
        mean, std = mnist.pixel_stats(data.images)
        content[split] = {
            "sha256": digest,
            "published_sha256": published,
            "per_class": {c: int(n) for c, n in zip(spec.classes, counts, strict=True)},
            "pixel_mean": round(mean, 7),
            "pixel_std": round(std, 7),
        }
        splits[split] = _classified(len(data.images), int((counts > 0).sum()))
        paths[split] = str(data.files[0])
    expected = {split: mnist.PUBLISHED[split] for split in mnist.FILES}
    return Found(list(spec.classes), True, splits, expected, paths, content)


def verify_sun397(scan: Scan, root: Path) -> Found:
    """SUN-397: every partition list (splits train_01, test_01, ...) against ClassName.txt, each
    listed image present and decodable; with the real 397 classes, 50 images per class per list
    and all ten partitions."""
    classes = sun397.read_classes(root)
    real = len(classes) == sun397.PUBLISHED["classes"]
    try:
        partitions = sun397.available_partitions(root)
    except DataError as exc:
        scan.problems.add("missing-split", str(root / sun397.PARTITIONS), exc.cause)
        partitions = []
    if real and len(partitions) != sun397.PUBLISHED["partitions"]:
        scan.problems.add(
            "missing-split",
            str(root / sun397.PARTITIONS),
            f"{len(partitions)} partitions; the benchmark has {sun397.PUBLISHED['partitions']}",
        )
    splits: dict[str, dict[str, int]] = {}
    expected: dict[str, int] = {}
    paths: dict[str, str] = {}
    for k in partitions:
        for side in sun397.SPLIT_FILES:
            key = f"{side}_{k:02d}"
            try:
                split = sun397.load_split(root, k, side)
            except DataError as exc:
                scan.problems.add("bad-annotation", exc.cause.split(":")[0], exc.cause)
                continue
            listing = sun397.SPLIT_FILES[side].format(k)
            for path in split.paths:
                scan.add_image(key, path, listed_in=listing)
            splits[key] = _classified(len(split.paths), len(set(split.labels)))
            paths[key] = str(sun397.partitions_dir(root) / sun397.SPLIT_FILES[side].format(k))
            if real:
                expected[key] = sun397.PUBLISHED[f"{side}_per_class"] * len(classes)
    return Found(classes, real, splits, expected, paths)
