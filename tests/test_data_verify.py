"""verify_dataset: clean synthetic sets pass; damaged copies report every problem in one run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from repro.data.claim_values import dataset_metric
from repro.data.stats import dataset_stats
from repro.data.synth import write_coco, write_image_folder, write_voc
from repro.data.verify import verify_dataset
from repro.data.voc import load_split
from repro.errors import DataError, ReproError


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_voc(root / "voc", splits={"trainval": 12, "test": 6}, size=(64, 64), seed=5)
    write_coco(root / "coco", splits={"train2017": 12, "val2017": 6}, size=(64, 64), seed=5)
    write_image_folder(root / "folder", per_split={"train": 4, "val": 2}, size=16)
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_clean_synthetic_sets_verify_ok(synth: Path) -> None:
    voc = verify_dataset("voc2007", synth / "voc", progress=False)
    assert voc.ok, voc.problems.summary()
    assert voc.root == synth / "voc" / "VOCdevkit" / "VOC2007"
    assert {s: v["images"] for s, v in voc.splits.items()} == {
        "test": 6, "train": 6, "trainval": 12, "val": 6}  # fmt: skip
    objects = sum(len(a.objects) for a in load_split(voc.root, "trainval").values())
    assert voc.splits["trainval"]["objects"] == objects
    assert voc.decoded == 18 and not voc.real_classes and voc.expected == {}
    coco = verify_dataset("coco", synth / "coco", progress=False)
    assert coco.ok, coco.problems.summary()
    assert coco.classes == ["circle", "square", "triangle"] and coco.decoded == 18
    folder = verify_dataset("imagefolder", synth / "folder", progress=False)
    assert folder.ok and folder.splits["train"] == {"images": 12, "objects": 0, "classes": 3}


def test_damaged_voc_reports_everything_in_one_run(synth: Path, tmp_path: Path) -> None:
    voc = _copy(synth / "voc", tmp_path / "voc") / "VOCdevkit" / "VOC2007"
    trainval = (voc / "ImageSets/Main/trainval.txt").read_text().split()
    jpeg = voc / "JPEGImages" / f"{trainval[0]}.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    xml = voc / "Annotations" / f"{trainval[1]}.xml"
    xml.write_text(xml.read_text()[:150])
    outside = voc / "Annotations" / f"{trainval[2]}.xml"
    text = outside.read_text()
    xmax = re.search(r"<xmax>(\d+)</xmax>", text)
    assert xmax is not None
    outside.write_text(text.replace(xmax.group(0), "<xmax>80</xmax>", 1))
    (voc / "ImageSets/Main/test.txt").unlink()
    report = verify_dataset("voc2007", voc, progress=False)
    assert report.problems.counts() == {
        "missing-split": 1,
        "truncated-annotation": 1,
        "box-outside-image": 1,
        "corrupt-image": 1,
    }
    named = {p.kind: p.path for p in report.problems.items}
    assert named["corrupt-image"] == str(jpeg) and named["truncated-annotation"] == str(xml)
    assert named["box-outside-image"] == str(outside)
    assert named["missing-split"].endswith("ImageSets/Main/test.txt")
    assert not report.ok and "test" not in report.splits and report.splits["trainval"]["images"]


def test_damaged_coco_reports_everything_in_one_run(synth: Path, tmp_path: Path) -> None:
    root = _copy(synth / "coco", tmp_path / "coco")
    path = root / "annotations" / "instances_train2017.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["bbox"] = [50, 50, 30, 5]  # beyond the 64-pixel image
    doc["annotations"][1]["category_id"] = 42
    path.write_text(json.dumps(doc))
    image = root / "train2017" / doc["images"][3]["file_name"]
    image.write_bytes(image.read_bytes()[:300])
    (root / "annotations" / "instances_val2017.json").unlink()
    report = verify_dataset("coco", root, progress=False)
    assert report.problems.counts() == {
        "missing-split": 1,
        "box-outside-image": 1,
        "unknown-class": 1,
        "corrupt-image": 1,
    }
    named = {p.kind: p.path for p in report.problems.items}
    assert named["corrupt-image"] == str(image)
    assert named["box-outside-image"] == f"{path} annotation {doc['annotations'][0]['id']}"
    assert named["missing-split"].endswith("instances_val2017.json")
    # a truncated JSON is one problem too, and the other split is still checked
    path.write_text(path.read_text()[:100])
    report = verify_dataset("coco", root, decode=False, progress=False)
    assert report.problems.counts() == {"missing-split": 1, "truncated-annotation": 1}


def test_real_class_lists_compare_counts(tmp_path: Path) -> None:
    voc = write_voc(tmp_path / "voc", splits={"trainval": 4}, classes=("aeroplane", "bird", "car"))
    (voc / "classes.txt").unlink()  # now the 20 PASCAL classes: counts are compared
    report = verify_dataset("voc2007", voc, decode=False, progress=False)
    assert report.real_classes and report.expected["trainval"] == 5011
    mismatches = {p.path.rsplit("/", 1)[-1]: p.detail for p in report.problems.of_kind(
        "count-mismatch")}  # fmt: skip
    assert mismatches["trainval.txt"] == "trainval has 4 images; the real voc2007 trainval has 5011"
    assert report.problems.counts()["missing-split"] == 1  # test
    wnids = ("n01440764", "n01443537")
    root = write_image_folder(tmp_path / "in", classes=wnids, per_split={"train": 2, "val": 1})
    report = verify_dataset("imagenet", root, decode=False, progress=False)
    assert report.real_classes and report.problems.counts() == {"count-mismatch": 3}
    assert report.expected == {"train": 1281167, "val": 50000}


def test_manifest_checksum_follows_the_files(synth: Path, tmp_path: Path) -> None:
    root = _copy(synth / "coco", tmp_path / "coco")
    first = verify_dataset("coco", root, decode=False, progress=False)
    again = verify_dataset("coco", root, decode=False, progress=False)
    assert first.index_sha256 == again.index_sha256
    image = next((root / "val2017").glob("*.jpg"))
    image.write_bytes(image.read_bytes() + b"\0")
    changed = verify_dataset("coco", root, decode=False, progress=False)
    assert changed.index_sha256 != first.index_sha256
    path = changed.write_manifest(tmp_path / "m" / "coco.json")
    manifest = json.loads(path.read_text())
    assert manifest["index_sha256"] == changed.index_sha256
    assert manifest["splits"]["val2017"]["images"] == 6 and manifest["num_classes"] == 3
    assert manifest["index_files"] == 12 + 6 + 2 and manifest["problems"] == {}


def test_missing_root_and_unknown_name_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        verify_dataset("voc2007", tmp_path / "nowhere")
    with pytest.raises(DataError, match="unknown dataset"):
        verify_dataset("cifar100", tmp_path)
    with pytest.raises(DataError, match="no PASCAL VOC2012 folder"):
        verify_dataset("voc2012", tmp_path)


def test_dataset_stats_and_metric(synth: Path) -> None:
    voc_root = synth / "voc" / "VOCdevkit" / "VOC2007"
    anns = load_split(voc_root, "trainval")
    objects = sum(len(a.objects) for a in anns.values())
    report = verify_dataset("voc2007", voc_root, decode=False, progress=False)
    stats = dataset_stats(report)
    assert stats["protocol_splits"] == ["trainval"] and stats["num_images"] == 12
    assert stats["objects_per_image"] == pytest.approx(objects / 12)
    assert dataset_stats(report, "train+val")["num_objects"] == objects
    assert dataset_metric("voc2007", voc_root, "num_images", unit="K") == pytest.approx(0.012)
    assert dataset_metric("voc2007", voc_root, "num_classes") == 3
    with pytest.raises(ReproError, match="no reader"):
        dataset_metric("ilsvrc2014_det", voc_root, "num_images")
    with pytest.raises(ReproError, match="test2017"):
        dataset_metric("coco", synth / "coco", "num_images", protocol_split="test2017")
    folder = verify_dataset("imagefolder", synth / "folder", decode=False, progress=False)
    assert dataset_stats(folder)["train_images_per_class"] == 4


def test_imagenet_flat_val_with_labels(tmp_path: Path) -> None:
    wnids = ("n01440764", "n01443537")
    root = write_image_folder(tmp_path, classes=wnids, per_split={"train": 2}, size=16)
    (root / "val").mkdir()
    lines = []
    for i in range(3):
        Image.new("RGB", (16, 16)).save(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
        lines.append(f"ILSVRC2012_val_{i:08d}.JPEG {wnids[i % 2]}\n")
    (root / "val" / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"not a jpeg")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(lines))
    report = verify_dataset("imagenet", root, labels=labels, progress=False)
    assert report.splits["val"] == {"images": 3, "objects": 0, "classes": 2}
    assert report.classes == list(wnids)
    counts = report.problems.counts()
    assert counts["missing-label"] == 1 and "corrupt-image" not in counts  # unlabelled: skipped
    (root / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"broken")
    report = verify_dataset("imagenet", root, labels=labels, progress=False)
    assert [p.path for p in report.problems.of_kind("corrupt-image")] == [
        str(root / "val" / "ILSVRC2012_val_00000001.JPEG")
    ]
