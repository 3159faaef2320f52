"""`repro eval`: JSON on stdout and nothing else; user errors as one paragraph and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from repro.cli import main
from repro.data.synth import write_image_folder
from repro.evaluation.classification import eval_transform
from repro.models import build_model
from tests.voc_results import write_voc_results

OBJECTS = {  # image id -> (class, xmin, ymin, xmax, ymax, difficult)
    "000001": [("cat", 10, 10, 60, 50, 0), ("dog", 70, 20, 120, 90, 0)],
    "000002": [("cat", 5, 5, 40, 40, 0), ("cat", 50, 50, 90, 95, 1)],
    "000003": [("dog", 20, 30, 80, 70, 0)],
}


def _xml(image_id: str, objects: list) -> str:
    parts = [
        f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for c, x1, y1, x2, y2, d in objects
    ]
    return (
        f"<annotation><filename>{image_id}.jpg</filename><size><width>128</width>"
        f"<height>128</height><depth>3</depth></size>{''.join(parts)}</annotation>"
    )


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objects in OBJECTS.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, objects))
    (root / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in OBJECTS))
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_voc_detections_print_json(voc: Path, tmp_path: Path, capsys) -> None:
    prefix = tmp_path / "results" / "comp4_det_test_"
    write_voc_results(
        prefix,
        {
            "cat": [
                ("000001", 0.9, (10, 10, 60, 50)),  # TP
                ("000002", 0.8, (50, 50, 90, 95)),  # on the difficult cat: ignored
                ("000003", 0.7, (1, 1, 30, 30)),  # FP
                ("000002", 0.6, (6, 6, 40, 40)),  # TP
            ],
            "dog": [("000001", 0.5, (70, 20, 120, 90))],  # one of two dogs
        },
    )
    argv = ["eval", "detections", "--metric", "voc07", "--gt", str(voc.parent)]
    code, out, err = _run([*argv, "--detections", str(tmp_path / "results")], capsys)
    assert code == 0, err
    result = json.loads(out)  # stdout holds the JSON and nothing else
    cat, dog = result["per_class"]["cat"], result["per_class"]["dog"]
    assert (cat["npos"], cat["tp"], cat["fp"], cat["detections"]) == (2, 2, 1, 4)
    # cat: rec .5 .5 .5 1, prec 1 1 .5 2/3 -> 11-point: 6 x 1 + 5 x 2/3
    assert cat["ap"] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert dog["ap"] == pytest.approx(6 / 11)  # recall 0.5 at precision 1
    assert result["mAP"] == pytest.approx((cat["ap"] + dog["ap"]) / 2)
    assert result["gt"] == str(voc) and result["images"] == 3 and result["metric"] == "voc07"

    code, out, _ = _run([*argv, "--detections", str(prefix), "--classes", "dog"], capsys)
    assert code == 0 and list(json.loads(out)["per_class"]) == ["dog"]


def _one_cat_gt() -> dict:
    """COCO ground truth: one 100x100 image with one cat at [10, 10, 40, 40]."""
    return {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 5, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40], "area": 1600,
             "iscrowd": 0}
        ],
    }  # fmt: skip


def _eval_coco(
    tmp_path: Path, gt: dict, res: list, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """`repro eval detections --metric coco` on ``gt`` and ``res`` written as JSON files."""
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    argv = ["eval", "detections", "--metric", "coco", "--gt", str(tmp_path / "gt.json")]
    return _run([*argv, "--detections", str(tmp_path / "res.json")], capsys)


def test_coco_detections_print_json(tmp_path: Path, capsys) -> None:
    gt = _one_cat_gt()
    res = [{"image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40], "score": 0.9}]
    code, out, err = _eval_coco(tmp_path, gt, res, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["AP"] == pytest.approx(1.0) and result["per_class"]["cat"] == pytest.approx(1.0)
    assert result["cross_check"]["agrees"] is True


@pytest.mark.parametrize(
    "argv_tail, named",
    [
        (["--metric", "voc07", "--gt", "{tmp}/nowhere", "--detections", "{tmp}"], "nowhere"),
        (["--metric", "voc07", "--gt", "{voc}", "--detections", "{tmp}/none_"], "none_"),
        (["--metric", "voc07", "--gt", "{voc}", "--split", "val", "--detections", "{tmp}"], "val"),
        (["--metric", "coco", "--gt", "{tmp}/gt.json", "--detections", "{tmp}/r.json"], "gt.json"),
    ],
)
def test_bad_paths_exit_2_with_one_paragraph(
    argv_tail: list[str], named: str, voc: Path, tmp_path: Path, capsys
) -> None:
    argv = [a.format(tmp=tmp_path, voc=voc) for a in argv_tail]
    code, out, err = _run(["eval", "detections", *argv], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and " Fix: " in err and named in err
    assert err.strip().count("\n") == 0  # one paragraph, no traceback


def test_classifier_json_matches_a_direct_evaluation(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "imgs", per_split={"val": 3}, size=32)
    broken = sorted((root / "val" / "square").iterdir())[0]
    broken.write_bytes(b"not a jpeg")
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=3).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    code, out, err = _run(
        ["eval", "classifier", "resnet20", "--weights", str(tmp_path / "w.pt"), "--data",
         str(root), "--resize", "32", "--crop", "32", "--no-progress", "--batch-size", "4"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["images"] == 8 and result["skipped"] == 1 and result["classes"] == 3
    assert result["top5_error"] == 0.0  # 3 classes: every target is in the top 5
    transform = eval_transform(32, 32)
    wrong = 0

    for label, name in enumerate(("circle", "square", "triangle")):
        for path in sorted((root / "val" / name).iterdir()):
            if path == broken:
                continue
            with Image.open(path) as img:
                x = transform(img.convert("RGB")).unsqueeze(0)
            with torch.no_grad():
                wrong += int(model(x).argmax(1).item() != label)
    assert result["top1_error"] == pytest.approx(100 * wrong / 8)

    code, _, err = _run(
        ["eval", "classifier", "resnet20", "--weights", str(tmp_path / "missing.pt"),
         "--data", str(root), "--no-progress"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "missing.pt" in err and err.startswith("error: ")


def test_broken_annotation_is_a_counted_skip(voc: Path, tmp_path: Path, capsys, caplog) -> None:
    (voc / "Annotations" / "000003.xml").write_text("<annotation><size><width>12")  # truncated
    write_voc_results(
        tmp_path / "r_",
        {"dog": [("000001", 0.9, (70, 20, 120, 90)), ("000003", 0.8, (20, 30, 80, 70))]},
    )
    code, out, err = _run(
        ["eval", "detections", "--metric", "voc2010", "--gt", str(voc), "--detections",
         str(tmp_path / "r_")],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["dataset_problems"] == {"truncated-annotation": 1}
    assert result["images"] == 2 and result["detections_dropped"] == 1
    assert result["per_class"]["dog"] == {"ap": 1.0, "npos": 1, "detections": 1, "tp": 1, "fp": 0}
    assert "000003.xml" in caplog.text  # logged (to stderr), not mixed into the JSON


def test_unscorable_boxes_are_counted_and_named_in_both_formats(
    voc: Path, tmp_path: Path, capsys, caplog
) -> None:
    """An inverted (x2 < x1 or y2 < y1) or non-finite box is left out of the scoring, counted
    and named in the JSON and on stderr, by the same rule for VOC files and COCO JSON."""
    prefix = tmp_path / "results" / "comp4_det_test_"
    prefix.parent.mkdir()
    (tmp_path / "results" / "comp4_det_test_cat.txt").write_text(
        "000001 0.9 10 10 60 50\n"  # TP
        "000002 0.8 40 5 5 40\n"  # x2 < x1
        "000003 0.7 1 30 30 1\n"  # y2 < y1
        "000001 nan 10 10 60 50\n"  # NaN score
        "000002 0.6 6 inf 40 40\n"  # infinite coordinate
    )
    argv = ["eval", "detections", "--metric", "voc07", "--gt", str(voc.parent)]
    with caplog.at_level("WARNING", logger="repro.evaluation"):
        code, out, err = _run([*argv, "--detections", str(prefix), "--classes", "cat"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["per_class"]["cat"]["detections"] == 1  # only the valid one is scored
    assert result["detections_invalid"] == 4
    assert result["detections_invalid_kinds"] == {"inverted": 2, "non-finite": 2}
    assert any(
        "comp4_det_test_cat.txt line 2: inverted" in w for w in result["detections_invalid_first"]
    )
    assert "4 detection(s) left out of the scoring" in caplog.text

    gt = _one_cat_gt()
    good = {"image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40], "score": 0.9}
    res = [good, {**good, "bbox": [10, 10, -5, 40]}, {**good, "score": float("nan")}]
    caplog.clear()
    with caplog.at_level("WARNING", logger="repro.evaluation"):
        code, out, err = _eval_coco(tmp_path, gt, res, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["detections"] == 1 and result["AP"] == pytest.approx(1.0)
    assert result["detections_invalid"] == 2
    assert result["detections_invalid_kinds"] == {"inverted": 1, "non-finite": 1}
    assert "res.json entry 1: inverted" in result["detections_invalid_first"][0]
    assert "2 detection(s) left out of the scoring" in caplog.text
