"""Synthetic datasets parse back through the readers; the VOC/COCO/ImageNet readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from repro.data.coco import CocoDetection, load_instances, voc_to_coco
from repro.data.imagenet import ImageNetSplit, imagenet_classes, imagenet_split
from repro.data.problems import Problems
from repro.data.synth import SHAPE_CLASSES, write_coco, write_image_folder, write_voc
from repro.data.voc import (
    VOC_CLASSES,
    VocDetection,
    load_split,
    parse_annotation,
    read_split,
    to_devkit_box,
    voc_classes,
)
from repro.errors import DataError, ReproError


def test_write_voc_parses_back(tmp_path: Path) -> None:
    voc = write_voc(tmp_path, splits={"trainval": 20, "test": 10}, difficult_fraction=0.3, seed=1)
    assert voc == tmp_path / "VOCdevkit" / "VOC2007"
    assert voc_classes(voc) == list(SHAPE_CLASSES)
    trainval, test = read_split(voc, "trainval"), read_split(voc, "test")
    assert (len(trainval), len(test)) == (20, 10) and not set(trainval) & set(test)
    assert sorted(read_split(voc, "train") + read_split(voc, "val")) == sorted(trainval)
    anns = load_split(voc, "trainval") | load_split(voc, "test")
    objects = [(a, o) for a in anns.values() for o in a.objects]
    assert all(1 <= len(a.objects) <= 3 for a in anns.values())
    for a, o in objects:
        xmin, ymin, xmax, ymax = o.bbox
        assert 1 <= xmin < xmax <= a.width and 1 <= ymin < ymax <= a.height
        side = max(xmax - xmin, ymax - ymin) + 1
        # difficult objects are the small ones (6-10% of the side), the others 15-45%
        assert side <= 11 if o.difficult else side >= 13
    assert any(o.difficult for _, o in objects) and not all(o.difficult for _, o in objects)
    image = Image.open(voc / "JPEGImages" / anns[trainval[0]].filename)
    assert image.size == (96, 96)


def test_voc_shapes_are_drawn_where_annotated(tmp_path: Path) -> None:
    voc = write_voc(tmp_path, splits={"trainval": 30}, max_objects=1, difficult_fraction=0.0)
    fill: dict[str, list[float]] = {c: [] for c in SHAPE_CLASSES}
    for ann in load_split(voc, "trainval").values():
        pixels = np.asarray(Image.open(voc / "JPEGImages" / ann.filename), dtype=np.float32)
        (obj,) = ann.objects
        x0, y0, x1, y1 = (int(v) for v in obj.bbox)
        box = pixels[y0 - 1 : y1, x0 - 1 : x1]
        cy, cx = box.shape[0] * 2 // 3, box.shape[1] // 2  # inside every shape
        colour = box[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(axis=0)
        fill[obj.name].append(float((np.abs(box - colour).sum(axis=2) < 90).mean()))
    mean = {c: np.mean(v) for c, v in fill.items()}
    # a filled square fills its box, a circle pi/4 of it, a triangle half (less JPEG edges)
    assert mean["square"] > 0.88
    assert 0.6 < mean["circle"] < 0.85
    assert 0.35 < mean["triangle"] < 0.58


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_synth_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    kwargs = {"splits": {"trainval": 4, "test": 2}}
    a = _files(write_voc(tmp_path / "a", seed=3, **kwargs))
    b = _files(write_voc(tmp_path / "b", seed=3, **kwargs))
    c = _files(write_voc(tmp_path / "c", seed=4, **kwargs))
    assert a == b and a != c
    coco = {"splits": {"train2017": 3}}
    assert _files(write_coco(tmp_path / "d", **coco)) == _files(write_coco(tmp_path / "e", **coco))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools on numpy 2
def test_write_coco_parses_back(tmp_path: Path) -> None:
    root = write_coco(tmp_path, splits={"train2017": 30, "val2017": 10}, crowd_fraction=0.5)
    train = load_instances(root / "annotations" / "instances_train2017.json")
    val = load_instances(root / "annotations" / "instances_val2017.json")
    assert (len(train["images"]), len(val["images"])) == (30, 10)
    ids = [im["id"] for im in train["images"] + val["images"]]
    assert len(set(ids)) == 40
    assert [c["id"] for c in train["categories"]] == [1, 2, 3]
    assert [c["name"] for c in train["categories"]] == list(SHAPE_CLASSES)
    images = {im["id"]: im for im in train["images"]}
    crowd = [a for a in train["annotations"] if a["iscrowd"] == 1]
    assert crowd and len(crowd) < len(train["annotations"])
    for a in train["annotations"]:
        im = images[a["image_id"]]
        assert im["file_name"] == f"{im['id']:012d}.jpg"
        assert (root / "train2017" / im["file_name"]).is_file()
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0
        assert x + w <= im["width"] and y + h <= im["height"]
        if a["iscrowd"]:
            rle = mask_utils.frPyObjects(a["segmentation"], im["height"], im["width"])
            decoded = mask_utils.decode(rle)
            assert decoded.sum() == a["area"]
            ys, xs = np.nonzero(decoded)
            assert [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] == [
                x,
                y,
                w,
                h,
            ]
        else:
            rles = mask_utils.frPyObjects(a["segmentation"], im["height"], im["width"])
            poly_area = float(mask_utils.area(mask_utils.merge(rles)))
            assert abs(poly_area - a["area"]) <= 0.25 * a["area"] + 4


def test_coco_detection_dataset(tmp_path: Path) -> None:
    root = write_coco(tmp_path, splits={"val2017": 6}, crowd_fraction=1.0)
    ds = CocoDetection(root / "val2017", root / "annotations" / "instances_val2017.json")
    assert len(ds) == 6 and ds.category_ids == [1, 2, 3] and ds.classes == list(SHAPE_CLASSES)
    image, target = ds[0]
    assert image.shape == (3, 96, 96) and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    ann = ds.annotations[ds.ids[0]]
    x, y, w, h = ann[0]["bbox"]
    assert target["boxes"][0].tolist() == [x, y, x + w, y + h]
    assert target["labels"].tolist() == [a["category_id"] - 1 for a in ann]
    assert target["iscrowd"].any() and target["difficult"].tolist() == target["iscrowd"].tolist()


def test_write_image_folder_and_imagenet_reader(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, per_split={"train": 4, "val": 2}, size=24)
    for split, n in (("train", 4), ("val", 2)):
        for c in SHAPE_CLASSES:
            assert len(list((root / split / c).glob("*.jpg"))) == n
    ds = ImageNetSplit(root, "val")
    assert ds.classes == sorted(SHAPE_CLASSES) and len(ds) == 6
    for path, label in ds.samples:
        assert path.parent.name == ds.classes[label]
    image, label = ds[0]
    assert image.size == (24, 24) and label == ds.samples[0][1]
    with pytest.raises(ReproError, match="9 synthetic classes asked; at most 8"):
        write_image_folder(tmp_path / "many", classes=tuple("abcdefghi"))


VOC2012_XML = """<annotation>
  <folder>VOC2012</folder>
  <filename>2008_000123.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object>
    <name>person</name>
    <bndbox><xmin>10.5</xmin><ymin>20</ymin><xmax>200</xmax><ymax>375</ymax></bndbox>
    <part><name>head</name><bndbox><xmin>50</xmin><ymin>30</ymin><xmax>80</xmax><ymax>60</ymax>
    </bndbox></part>
  </object>
  <object>
    <name>dog</name><truncated>1</truncated><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>500</xmax><ymax>100</ymax></bndbox>
  </object>
</annotation>
"""


def _hand_written_voc(tmp_path: Path) -> Path:
    voc = tmp_path / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    (voc / "Annotations" / "2008_000123.xml").write_text(VOC2012_XML)
    Image.new("RGB", (500, 375), (10, 20, 30)).save(voc / "JPEGImages" / "2008_000123.jpg")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("2008_000123\n")
    return voc


def test_parse_hand_written_voc_xml(tmp_path: Path) -> None:
    voc = _hand_written_voc(tmp_path)
    ann = parse_annotation(voc / "Annotations" / "2008_000123.xml")
    assert (ann.image_id, ann.filename, ann.width, ann.height) == (
        "2008_000123",
        "2008_000123.jpg",
        500,
        375,
    )
    person, dog = ann.objects
    assert person.name == "person" and person.bbox == (10.5, 20.0, 200.0, 375.0)
    assert not person.difficult and not person.truncated  # absent fields mean 0
    assert dog.difficult and dog.truncated and dog.bbox == (1.0, 1.0, 500.0, 100.0)
    ds = VocDetection(voc, "val")
    assert ds.classes == list(VOC_CLASSES)
    image, target = ds[0]
    assert image.shape == (3, 375, 500)
    assert target["boxes"].tolist() == [[9.5, 19.0, 200.0, 375.0], [0.0, 0.0, 500.0, 100.0]]
    assert target["labels"].tolist() == [VOC_CLASSES.index("person"), VOC_CLASSES.index("dog")]
    assert target["difficult"].tolist() == [False, True] and target["image_id"] == "2008_000123"
    assert to_devkit_box(target["boxes"][1].tolist()) == dog.bbox


def test_voc_errors_name_the_file(tmp_path: Path) -> None:
    voc = _hand_written_voc(tmp_path)
    xml = voc / "Annotations" / "2008_000123.xml"
    xml.write_text(VOC2012_XML[:200])
    with pytest.raises(DataError, match="2008_000123.xml.*truncated"):
        parse_annotation(xml)
    xml.write_text(VOC2012_XML.replace("<width>500</width>", ""))
    with pytest.raises(DataError, match=r"2008_000123.xml.*<width>"):
        parse_annotation(xml)
    with pytest.raises(DataError, match=r"trainval.txt does not exist; splits present: val"):
        read_split(voc, "trainval")


def test_load_split_counts_bad_objects_or_raises(tmp_path: Path) -> None:
    voc = _hand_written_voc(tmp_path)
    xml = voc / "Annotations" / "2008_000123.xml"
    xml.write_text(VOC2012_XML.replace("<name>dog</name>", "<name>unicorn</name>"))
    with pytest.raises(DataError, match="unicorn"):
        load_split(voc, "val")
    problems = Problems()
    anns = load_split(voc, "val", problems)
    assert problems.counts() == {"unknown-class": 1}
    assert [o.name for o in anns["2008_000123"].objects] == ["person"]
    assert "unicorn" in problems.summary() and str(xml) in problems.summary()


def test_voc_to_coco_round_trip(tmp_path: Path) -> None:
    voc = write_voc(tmp_path, splits={"test": 8}, difficult_fraction=0.4, seed=2)
    doc = voc_to_coco(voc, "test")
    anns = load_split(voc, "test")
    assert [im["voc_id"] for im in doc["images"]] == list(anns)
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3]
    objects = [o for a in anns.values() for o in a.objects]
    assert len(doc["annotations"]) == len(objects)
    for coco_ann, obj in zip(doc["annotations"], objects, strict=True):
        xmin, ymin, xmax, ymax = obj.bbox
        x, y, w, h = coco_ann["bbox"]
        assert (x, y, w, h) == (xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1)
        assert coco_ann["area"] == w * h and coco_ann["iscrowd"] == 0
        assert coco_ann["ignore"] == int(obj.difficult)
    assert any(a["ignore"] for a in doc["annotations"])
    path = tmp_path / "test.json"
    path.write_text(json.dumps(doc))
    coco_ds, voc_ds = CocoDetection(voc / "JPEGImages", path), VocDetection(voc, "test")
    for i in range(len(voc_ds)):
        c, v = coco_ds.target(i), voc_ds.target(i)
        assert c["boxes"].tolist() == v["boxes"].tolist()
        assert c["labels"].tolist() == v["labels"].tolist()
        assert c["difficult"].tolist() == v["difficult"].tolist()


def test_load_instances_errors(tmp_path: Path) -> None:
    bad = tmp_path / "instances_val2017.json"
    bad.write_text('{"images": [], "annotations": [')
    with pytest.raises(DataError, match="instances_val2017.json is not valid JSON"):
        load_instances(bad)
    bad.write_text('{"images": [], "annotations": []}')
    with pytest.raises(DataError, match="lacks the list.*categories"):
        load_instances(bad)


def test_imagenet_flat_val_with_label_files(tmp_path: Path) -> None:
    wnids = ("n01440764", "n01443537")
    root = write_image_folder(tmp_path / "in", classes=wnids, per_split={"train": 2}, size=16)
    val = root / "val"
    val.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16)).save(val / f"ILSVRC2012_val_{i:08d}.JPEG")
    # text labels mixing wnids and class indices; image 3 has no label; one label has no image
    labels = tmp_path / "val_labels.txt"
    labels.write_text(
        "ILSVRC2012_val_00000000.JPEG n01443537\nILSVRC2012_val_00000001.JPEG 0\n"
        "ILSVRC2012_val_00000002.JPEG n01440764\nILSVRC2012_val_00000099.JPEG 1\n"
    )
    with pytest.raises(DataError, match="ILSVRC2012_val_00000003.*missing-label"):
        imagenet_split(root, "val", labels)
    problems = Problems()
    samples = imagenet_split(root, "val", labels, problems)
    assert [(p.name, label) for p, label in samples] == [
        ("ILSVRC2012_val_00000000.JPEG", 1),
        ("ILSVRC2012_val_00000001.JPEG", 0),
        ("ILSVRC2012_val_00000002.JPEG", 0),
    ]
    assert problems.counts() == {"missing-label": 1, "missing-image": 1}
    # the Kaggle solution file, found in a folder above the root
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        + "".join(
            f"ILSVRC2012_val_{i:08d},{wnids[i % 2]} 1 2 10 12 {wnids[i % 2]} 3 3 9 9\n"
            for i in range(4)
        )
    )
    assert imagenet_classes(root) == list(wnids)
    samples = imagenet_split(root, "val")
    assert [label for _, label in samples] == [0, 1, 0, 1]
    with pytest.raises(DataError, match="no label file was found"):
        (tmp_path / "LOC_val_solution.csv").unlink()
        imagenet_split(root, "val")


def test_box_outside_image_is_clipped(tmp_path: Path) -> None:
    voc = _hand_written_voc(tmp_path)
    xml = voc / "Annotations" / "2008_000123.xml"
    xml.write_text(VOC2012_XML.replace("<xmax>500</xmax>", "<xmax>530</xmax>"))
    assert load_split(voc, "val")["2008_000123"].objects[1].bbox == (1.0, 1.0, 500.0, 100.0)
    problems = Problems()
    load_split(voc, "val", problems)
    assert problems.counts() == {"box-outside-image": 1}
