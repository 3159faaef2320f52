"""Writing VOC devkit result files (``<prefix><class>.txt``), as a detector's run would, for the
tests of repro.evaluation's reader and `repro eval detections`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from repro.evaluation.detections_io import Detection


def write_voc_results(
    prefix: Path | str, detections: Mapping[str, Sequence[Detection]]
) -> list[Path]:
    """Write ``<prefix><class>.txt`` for each class. Numbers are written with Python's shortest
    round-trip repr, so reading the files back gives the same floats."""
    paths = []
    for cls, dets in detections.items():
        path = Path(f"{prefix}{cls}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for image_id, score, box in dets:
            numbers = " ".join(repr(float(v)) for v in (score, *box))
            lines.append(f"{image_id} {numbers}\n")
        path.write_text("".join(lines))
        paths.append(path)
    return paths
