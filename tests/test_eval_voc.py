"""VOC AP: the library against a literal transcription of the reference voc_eval.py, on seeded
random fixtures with the cases that trip implementations up, plus hand-computed cases."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from repro.data.voc import VocAnnotation, VocObject
from repro.errors import ReproError
from repro.evaluation.voc import ClassResult, eval_class, evaluate_voc, voc_ap

# --- reference: py-faster-rcnn lib/datasets/voc_eval.py, kept deliberately literal -----------


def ref_voc_ap(rec, prec, use_07_metric=False):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
    else:
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def ref_voc_eval(recs, imagenames, classname, splitlines, ovthresh=0.5, use_07_metric=False):
    """voc_eval() after the annotation cache and the detection file are read: `recs` maps an
    image name to its objects ({'name', 'bbox', 'difficult'}), `splitlines` the file's lines
    split on spaces."""
    class_recs = {}
    npos = 0
    for imagename in imagenames:
        R = [obj for obj in recs[imagename] if obj["name"] == classname]
        bbox = np.array([x["bbox"] for x in R])
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + sum(~difficult)
        class_recs[imagename] = {"bbox": bbox, "difficult": difficult, "det": det}

    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2:]] for x in splitlines]).reshape(-1, 4)

    sorted_ind = np.argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]

    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)

        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (BBGT[:, 2] - BBGT[:, 0] + 1.0) * (BBGT[:, 3] - BBGT[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)

        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0

    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = ref_voc_ap(rec, prec, use_07_metric)
    return rec, prec, ap


# --- generated fixtures -----------------------------------------------------------------------

CLASSES = ("cat", "dog", "car", "bird")  # "bird" has ground truth but never a detection


def _box(rng: random.Random, width: int = 200, height: int = 150) -> tuple[float, ...]:
    x1, y1 = rng.randint(1, width - 40), rng.randint(1, height - 40)
    return (x1, y1, rng.randint(x1 + 5, min(width, x1 + 80)), rng.randint(y1 + 5, height))


def _jitter(rng: random.Random, box: tuple[float, ...], amount: int) -> tuple[float, ...]:
    return tuple(float(v + rng.randint(-amount, amount)) for v in box)


def make_fixture(seed: int) -> tuple[dict[str, VocAnnotation], dict[str, list]]:
    """Several images and classes, difficult objects, duplicates, detections on difficult
    objects, ties in score, boxes touching at one pixel, images without objects."""
    rng = random.Random(seed)
    annotations: dict[str, VocAnnotation] = {}
    detections: dict[str, list] = {c: [] for c in CLASSES if c != "bird"}
    scores = [round(rng.random(), 2) for _ in range(12)]  # few distinct values: many ties

    def score() -> float:
        return rng.choice(scores)

    for i in range(12):
        image_id = f"{i:06d}"
        objects = []
        for _ in range(rng.randint(0, 4)):
            cls = rng.choice(CLASSES)
            objects.append(VocObject(cls, _box(rng), difficult=rng.random() < 0.25))
        if i == 3:  # two objects touching at one pixel column: x2 of one == x1 of the other
            objects += [
                VocObject("cat", (10, 10, 50, 60), False),
                VocObject("cat", (50, 10, 90, 60), False),
            ]
        annotations[image_id] = VocAnnotation(image_id, f"{image_id}.jpg", 200, 150, objects)
        for obj in objects:
            if obj.name == "bird":
                continue
            dets = detections[obj.name]
            if rng.random() < 0.8:
                dets.append((image_id, score(), _jitter(rng, obj.bbox, 3)))
            if rng.random() < 0.4:  # duplicate of the same object
                dets.append((image_id, score(), _jitter(rng, obj.bbox, 2)))
            if rng.random() < 0.2:  # a poor localisation
                dets.append((image_id, score(), _jitter(rng, obj.bbox, 25)))
        for _ in range(rng.randint(0, 2)):  # background false positives, any class
            detections[rng.choice(["cat", "dog", "car"])].append((image_id, score(), _box(rng)))
    # a box sharing exactly one pixel with a ground-truth box, and an exact tie pair
    detections["cat"].append(("000003", 0.5, (90.0, 60.0, 120.0, 90.0)))
    detections["cat"] += [("000003", 0.7, (10.0, 10.0, 50.0, 60.0))] * 2
    return annotations, detections


def reference_ap(annotations, detections, cls: str, use_07: bool) -> float:
    recs = {
        image_id: [
            {"name": o.name, "bbox": list(o.bbox), "difficult": int(o.difficult)}
            for o in ann.objects
        ]
        for image_id, ann in annotations.items()
    }
    lines = [[i, repr(s), *(repr(float(v)) for v in b)] for i, s, b in detections.get(cls, [])]
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(ref_voc_eval(recs, list(annotations), cls, lines, 0.5, use_07)[2])


@pytest.mark.parametrize("metric", ["voc07", "voc2010"])
@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_reference_voc_eval(seed: int, metric: str) -> None:
    annotations, detections = make_fixture(seed)
    use_07 = metric == "voc07"
    result = evaluate_voc(annotations, detections, metric=metric, classes=CLASSES)
    defined = []
    for cls in CLASSES:
        ours = result["per_class"][cls]
        if ours["npos"] == 0:  # the reference divides by zero here: documented as no AP
            assert ours["ap"] is None
            continue
        expected = reference_ap(annotations, detections, cls, use_07)
        assert ours["ap"] == pytest.approx(expected, abs=1e-6)
        defined.append(ours["ap"])
    assert result["per_class"]["bird"]["detections"] == 0
    if result["per_class"]["bird"]["npos"]:
        assert result["per_class"]["bird"]["ap"] == 0.0
    assert result["mAP"] == pytest.approx(sum(defined) / len(defined), abs=1e-12)
    assert result["images"] == 12 and result["classes"] == list(CLASSES)


def test_fixture_exercises_the_hard_cases() -> None:
    """The random fixtures must actually hold duplicates and detections on difficult objects,
    or the agreement test above proves less than it claims."""
    duplicates = ignored = 0
    for seed in range(8):
        annotations, detections = make_fixture(seed)
        for cls in ("cat", "dog", "car"):
            gts = {
                i: [(o.bbox, o.difficult) for o in a.objects if o.name == cls]
                for i, a in annotations.items()
            }
            r = eval_class(gts, detections[cls])
            ignored += r.ignored
            duplicates += r.fp
    assert ignored > 0 and duplicates > 0


# --- hand-computed cases ----------------------------------------------------------------------


def test_voc_ap_known_curves() -> None:
    rec = np.array([0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 2 / 3])
    # all-point: recall 0->0.5 at envelope 1.0, 0.5->1.0 at 2/3
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11-point: t=0..0.5 (6 points) max precision 1.0, t=0.6..1.0 (5 points) 2/3
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)
    assert voc_ap(np.array([]), np.array([]), use_07_metric=True) == 0.0
    assert voc_ap(np.array([]), np.array([]), use_07_metric=False) == 0.0


def test_eleven_point_uses_the_reference_thresholds() -> None:
    # recall exactly 0.3 (3/10) does not reach the reference's t = 0.30000000000000004
    rec, prec = np.array([0.3]), np.array([1.0])
    assert voc_ap(rec, prec, True) == pytest.approx(3 / 11)
    assert voc_ap(rec, prec, True) == pytest.approx(ref_voc_ap(rec, prec, True))


def test_eval_class_difficult_duplicate_and_one_pixel_touch() -> None:
    gts = {
        "a": [((1, 1, 10, 10), False), ((21, 1, 30, 10), True)],
        "b": [((1, 1, 10, 10), False)],
    }
    dets = [
        ("a", 0.9, (1, 1, 10, 10)),  # TP
        ("a", 0.8, (1, 1, 10, 10)),  # duplicate: FP
        ("a", 0.7, (21, 1, 30, 10)),  # on the difficult object: ignored
        ("b", 0.6, (10, 10, 19, 19)),  # touches the GT at one pixel: IoU 1/199, FP
        ("b", 0.5, (1, 1, 10, 10)),  # TP
    ]
    r = eval_class(gts, dets, use_07_metric=False)
    assert (r.npos, r.detections, r.tp, r.fp, r.ignored) == (2, 5, 2, 2, 1)
    # ranks: TP, FP, ignored, FP, TP -> rec .5 .5 .5 .5 1; prec 1 .5 .5 1/3 .5
    assert r.ap == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)


def test_iou_threshold_is_strict_and_uses_plus_one_widths() -> None:
    # GT 10x10 pixels (1..10); detection 1..10 x 1..5 covers 50 of 100 pixels: IoU exactly 0.5
    gts = {"a": [((1, 1, 10, 10), False)]}
    assert eval_class(gts, [("a", 1.0, (1, 1, 10, 5))]).tp == 0
    assert eval_class(gts, [("a", 1.0, (1, 1, 10, 6))]).tp == 1


def test_no_detections_and_no_positives() -> None:
    gts = {"a": [((1, 1, 10, 10), False)]}
    assert eval_class(gts, []) == ClassResult(0.0, 1, 0, 0, 0)
    only_difficult = {"a": [((1, 1, 10, 10), True)]}
    r = eval_class(only_difficult, [("a", 1.0, (1, 1, 10, 10))])
    assert math.isnan(r.ap) and r.npos == 0


def test_evaluate_voc_excludes_classes_without_positives_from_map() -> None:
    ann = {
        "1": VocAnnotation(
            "1",
            "1.jpg",
            50,
            50,
            [VocObject("cat", (1, 1, 10, 10), False), VocObject("dog", (5, 5, 20, 20), True)],
        )
    }
    dets = {"cat": [("1", 0.9, (1, 1, 10, 10))], "dog": [("1", 0.9, (5, 5, 20, 20))]}
    result = evaluate_voc(ann, dets, metric="voc2010")
    assert result["per_class"]["dog"]["ap"] is None
    assert result["mAP"] == pytest.approx(1.0)
    assert result["classes"] == ["cat", "dog"]  # VOC order of the classes present


def test_evaluate_voc_refuses_unknown_classes_and_images() -> None:
    ann = {"1": VocAnnotation("1", "1.jpg", 50, 50, [VocObject("cat", (1, 1, 10, 10), False)])}
    with pytest.raises(ReproError, match="'kitten'"):
        evaluate_voc(ann, {"kitten": []}, classes=["cat"])
    with pytest.raises(ReproError, match="'2'"):
        evaluate_voc(ann, {"cat": [("2", 0.5, (1, 1, 5, 5))]})
    with pytest.raises(ReproError, match="voc2012") as excinfo:
        evaluate_voc(ann, {}, metric="voc2012")
    assert "voc07" in excinfo.value.paragraph()
