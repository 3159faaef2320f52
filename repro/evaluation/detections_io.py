"""Detections in the formats people already have: VOC devkit result files and COCO result JSON.

VOC devkit results are one text file per class, ``<prefix><class>.txt`` (e.g.
``results/comp4_det_test_car.txt``), one detection a line: ``image_id score x1 y1 x2 y2`` with
the box in the devkit's 1-based inclusive pixel coordinates. COCO results are a JSON list of
``{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro.errors import ReproError

Box = tuple[float, float, float, float]
Detection = tuple[str, float, Box]

log = logging.getLogger("repro.evaluation")
SHOWN_INVALID = 20  # invalid detections named one by one in the output; the rest are counted


class InvalidDetections:
    """Detections that cannot be scored (a box with x2 < x1 or y2 < y1, a NaN or infinite
    coordinate or score): one rule for VOC and COCO files. They are left out of the scoring,
    counted by kind and named (file and line, or results entry), in the output and on stderr,
    as dataset problems are."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []  # (kind, "where: what")

    def add(self, kind: str, where: str) -> None:
        self.items.append((kind, where))

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> dict[str, int]:
        return dict(Counter(kind for kind, _ in self.items))

    def as_output(self) -> dict[str, Any]:
        return {
            "detections_invalid": len(self),
            "detections_invalid_kinds": self.counts(),
            "detections_invalid_first": [w for _, w in self.items[:SHOWN_INVALID]],
        }

    def warn(self, source: str) -> None:
        if self.items:
            shown = "; ".join(w for _, w in self.items[:3])
            more = f" (and {len(self) - 3} more)" if len(self) > 3 else ""
            log.warning(
                "%s: %d detection(s) left out of the scoring, %s: %s%s",
                source,
                len(self),
                self.counts(),
                shown,
                more,
            )


def listing(values: Sequence[Any], limit: int = 5) -> str:
    """The first ``limit`` values' reprs, and how many more there are."""
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def box_problem(score: float, box: Sequence[float]) -> str | None:
    """Why a detection (score, x1 y1 x2 y2) cannot be scored, or None."""
    if not all(math.isfinite(v) for v in (score, *box)):
        return "non-finite"
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        return "inverted"
    return None


def _class_files_in_dir(directory: Path, classes: Sequence[str]) -> dict[str, Path]:
    """Find ``<prefix><class>.txt`` files in a directory; the prefix must be the same for all."""
    by_prefix: dict[str, dict[str, Path]] = {}
    for path in sorted(directory.glob("*.txt")):
        for cls in classes:
            if path.name.endswith(f"{cls}.txt"):
                prefix = path.name[: -len(cls) - len(".txt")]
                by_prefix.setdefault(prefix, {})[cls] = path
    if not by_prefix:
        return {}
    best = max(len(files) for files in by_prefix.values())
    prefixes = sorted(p for p, files in by_prefix.items() if len(files) == best)
    if len(prefixes) > 1:
        raise ReproError(
            f"{directory} holds result files of several runs (prefixes "
            f"{', '.join(repr(p) for p in prefixes)}).",
            f"pass the prefix instead of the directory, e.g. {directory / prefixes[0]}.",
        )
    return by_prefix[prefixes[0]]


def voc_result_files(path_or_prefix: Path | str, classes: Sequence[str]) -> dict[str, Path]:
    """The result file of each class that has one. ``path_or_prefix``: a directory holding the
    files, a prefix (``results/comp4_det_test_``) or a devkit-style pattern with ``{}`` for the
    class (``results/comp4_det_test_{}.txt``)."""
    text = str(path_or_prefix)
    if Path(text).is_dir():
        return _class_files_in_dir(Path(text), classes)
    if "{}" in text:
        candidates = {cls: Path(text.format(cls)) for cls in classes}
    else:
        candidates = {cls: Path(f"{text}{cls}.txt") for cls in classes}
    return {cls: path for cls, path in candidates.items() if path.is_file()}


def _parse_line(line: str, path: Path, number: int) -> Detection:
    fields = line.split()
    problem = ""
    if len(fields) != 6:
        problem = f"has {len(fields)} fields, expected 6"
    else:
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            problem = "has a score or coordinate that is not a number"
    if problem:
        raise ReproError(
            f"{path} line {number} {problem}: {line.strip()[:120]!r}.",
            "write one detection per line as `image_id score x1 y1 x2 y2` (VOC devkit results "
            "format, 1-based inclusive pixel coordinates, separated by spaces).",
        )
    score, x1, y1, x2, y2 = values
    return fields[0], score, (x1, y1, x2, y2)


def read_voc_file(path: Path, invalid: InvalidDetections | None = None) -> list[Detection]:
    """The detections of one devkit result file, in file order; blank lines are skipped, and
    so are detections that cannot be scored (recorded in ``invalid``)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReproError(
            f"cannot read detection file {path}: {exc}.", "check the file is a text file."
        ) from None
    invalid = invalid if invalid is not None else InvalidDetections()
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        detection = _parse_line(line, Path(path), number)
        kind = box_problem(detection[1], detection[2])
        if kind is not None:
            invalid.add(kind, f"{path} line {number}: {kind} box {line.strip()[:120]!r}")
            continue
        out.append(detection)
    return out


def read_voc_results(
    path_or_prefix: Path | str,
    classes: Sequence[str],
    invalid: InvalidDetections | None = None,
) -> dict[str, list[Detection]]:
    """class -> [(image_id, score, (x1, y1, x2, y2))] from devkit result files.

    A class without a file has no detections; no file for any class is an error (the path or
    prefix is wrong). A malformed line is a ReproError naming the file and line number; a
    detection that cannot be scored (inverted or non-finite box or score) is left out, recorded
    in ``invalid`` and warned about.
    """
    files = voc_result_files(path_or_prefix, classes)
    if not files:
        example = f"{path_or_prefix}{classes[0]}.txt" if classes else "<prefix><class>.txt"
        raise ReproError(
            f"no detection result files found at {path_or_prefix} for any of the "
            f"{len(classes)} classes (looked for e.g. {example}).",
            "pass the directory holding <prefix><class>.txt files (VOC devkit results, e.g. "
            "comp4_det_test_car.txt) or the prefix itself (results/comp4_det_test_), and check "
            "the class names (--classes).",
        )
    invalid = invalid if invalid is not None else InvalidDetections()
    out = {cls: read_voc_file(files[cls], invalid) if cls in files else [] for cls in classes}
    invalid.warn(str(path_or_prefix))
    return out


def _bad_entry(source: str, index: int, problem: str) -> ReproError:
    return ReproError(
        f"{source} entry {index}: {problem}.",
        'each entry must be {"image_id": int, "category_id": int, "bbox": [x, y, width, height], '
        '"score": number} (COCO results format, boxes in pixels, width and height >= 0).',
    )


def _is_number(value: Any) -> bool:
    """A JSON number (finite or not; NaN and Infinity parse as floats)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_coco_results(
    results: Any,
    source: str = "results",
    *,
    iou_type: str = "bbox",
    invalid: InvalidDetections | None = None,
) -> list[dict[str, Any]]:
    """Check a COCO results list; a ReproError names ``source`` and the first malformed entry's
    index. Returns the entries that can be scored: one with a negative width or height or a
    non-finite number in its box or score is left out, recorded in ``invalid`` and warned
    about. ``iou_type`` "segm" asks for a ``segmentation`` (RLE) instead of a ``bbox``."""
    geometry = "bbox" if iou_type == "bbox" else "segmentation"
    if not isinstance(results, list):
        raise ReproError(
            f"{source} holds a JSON {type(results).__name__}, not a list of detections.",
            "write the COCO results format: a JSON list of {image_id, category_id, bbox, score}.",
        )
    for index, entry in enumerate(results):
        if not isinstance(entry, dict):
            raise _bad_entry(source, index, f"is a {type(entry).__name__}, not an object")
        missing = [k for k in ("image_id", "category_id", geometry, "score") if k not in entry]
        if missing:
            raise _bad_entry(source, index, f"lacks {', '.join(missing)}")
        for key in ("image_id", "category_id"):
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad_entry(source, index, f"{key} is {value!r}, not an integer")
        if not _is_number(entry["score"]):
            raise _bad_entry(source, index, f"score is {entry['score']!r}, not a number")
        if geometry != "bbox":
            continue
        bbox = entry["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
            raise _bad_entry(source, index, f"bbox is {bbox!r}, not 4 numbers")
    invalid = invalid if invalid is not None else InvalidDetections()
    kept = []
    for index, entry in enumerate(results):
        if geometry == "bbox":
            x, y, w, h = entry["bbox"]
            kind = box_problem(entry["score"], (x, y, x + w, y + h))
            if kind is not None:
                what = f"bbox {entry['bbox']!r}, score {entry['score']!r}"
                invalid.add(kind, f"{source} entry {index}: {kind} box ({what})")
                continue
        elif not math.isfinite(entry["score"]):
            invalid.add("non-finite", f"{source} entry {index}: score {entry['score']!r}")
            continue
        kept.append(entry)
    invalid.warn(source)
    return kept


def read_coco_results(
    path: Path | str, *, iou_type: str = "bbox", invalid: InvalidDetections | None = None
) -> list[dict[str, Any]]:
    """Load and validate a COCO results JSON file (see :func:`validate_coco_results`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReproError(
            f"COCO results file {path} does not exist.", "pass the results JSON path."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReproError(f"cannot read COCO results file {path}: {exc}.", "check it.") from None
    except json.JSONDecodeError as exc:
        raise ReproError(
            f"COCO results file {path} is not valid JSON ({exc.msg} at line {exc.lineno}).",
            "write the results with json.dump; a truncated file means the run did not finish.",
        ) from None
    return validate_coco_results(data, str(path), iou_type=iou_type, invalid=invalid)
