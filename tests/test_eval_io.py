"""Detection files: VOC devkit results round-trip, malformed lines, COCO results validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.errors import ReproError
from repro.evaluation.detections_io import (
    InvalidDetections,
    read_coco_results,
    read_voc_results,
    validate_coco_results,
)
from tests.voc_results import write_voc_results

DETECTIONS = {
    "car": [("000001", 0.987654321, (12.0, 30.5, 200.25, 180.0)), ("000004", 0.1, (1, 1, 5, 5))],
    "person": [("000002", 1 / 3, (0.1, 0.2, 0.3, 0.4))],
}


def test_voc_round_trip_by_prefix_and_by_directory(tmp_path: Path) -> None:
    prefix = tmp_path / "results" / "comp4_det_test_"
    paths = write_voc_results(prefix, DETECTIONS)
    assert sorted(p.name for p in paths) == ["comp4_det_test_car.txt", "comp4_det_test_person.txt"]
    classes = ["car", "person", "dog"]
    expected = {
        "car": [(i, s, tuple(float(v) for v in b)) for i, s, b in DETECTIONS["car"]],
        "person": DETECTIONS["person"],
        "dog": [],  # no file: no detections
    }
    assert read_voc_results(prefix, classes) == expected
    assert read_voc_results(tmp_path / "results", classes) == expected
    assert (
        read_voc_results(str(tmp_path / "results" / "comp4_det_test_{}.txt"), classes) == expected
    )


def test_voc_reads_devkit_formatted_lines(tmp_path: Path) -> None:
    # py-faster-rcnn writes '{:s} {:.3f} {:.1f} {:.1f} {:.1f} {:.1f}'
    (tmp_path / "comp3_det_val_cat.txt").write_text("000005 0.812 48.0 240.0 195.0 371.0\n\n")
    got = read_voc_results(tmp_path, ["cat"])
    assert got == {"cat": [("000005", 0.812, (48.0, 240.0, 195.0, 371.0))]}


def test_voc_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "det_cat.txt"
    path.write_text("000001 0.9 1 2 3 4\n000002 0.8 1 2 3\n")
    with pytest.raises(ReproError, match=r"det_cat.txt line 2 has 5 fields"):
        read_voc_results(tmp_path / "det_", ["cat"])
    path.write_text("000001 0.9 1 2 3 4\n\n000002 high 1 2 3 4\n")
    with pytest.raises(ReproError, match=r"line 3 .*not a number"):
        read_voc_results(tmp_path / "det_", ["cat"])
    path.write_text("000001 nan 1 2 3 4\n000002 0.5 1 2 3 4\n000003 0.5 3 2 1 4\n")
    invalid = InvalidDetections()
    got = read_voc_results(tmp_path / "det_", ["cat"], invalid)  # counted, not scored
    assert got == {"cat": [("000002", 0.5, (1.0, 2.0, 3.0, 4.0))]}
    assert invalid.counts() == {"non-finite": 1, "inverted": 1}


def test_voc_missing_or_ambiguous_files(tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="no detection result files") as excinfo:
        read_voc_results(tmp_path / "nothing_", ["cat", "dog"])
    assert "nothing_cat.txt" in excinfo.value.cause
    write_voc_results(tmp_path / "comp3_", {"cat": []})
    write_voc_results(tmp_path / "comp4_", {"cat": []})
    with pytest.raises(ReproError, match="several runs"):
        read_voc_results(tmp_path, ["cat"])


def test_coco_results_validation_names_entry(tmp_path: Path) -> None:
    good = {"image_id": 1, "category_id": 3, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}
    assert validate_coco_results([good]) == [good]
    cases = [
        ({"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}, "entry 1: lacks score"),
        ({**good, "image_id": "1"}, "entry 1: image_id is '1'"),
        ({**good, "category_id": True}, "entry 1: category_id"),
    ]
    for entry, message in cases:
        with pytest.raises(ReproError, match=message):
            validate_coco_results([good, entry], "res.json")
    invalid = InvalidDetections()
    unscorable = [{**good, "bbox": [1, 2, -3, 4]}, {**good, "score": float("inf")}]
    assert validate_coco_results([good, *unscorable], "res.json", invalid=invalid) == [good]
    assert invalid.counts() == {"inverted": 1, "non-finite": 1}
    path = tmp_path / "res.json"
    path.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ReproError, match="res.json holds a JSON dict"):
        read_coco_results(path)
    with pytest.raises(ReproError, match="does not exist"):
        read_coco_results(tmp_path / "missing.json")
