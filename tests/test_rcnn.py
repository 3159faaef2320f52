"""R-CNN's accuracy system (repro.methods.rcnn: system, regions; repro.train.rcnn) on a tiny
synthetic VOC set: window labels by IoU on hand-made boxes, the proposal cache, and measure_rcnn
end to end for both window classifiers with a tiny network (AlexNet at 227 is too slow to
fine-tune in a test)."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from repro.claims import load_paper
from repro.config import AccuracySettings
from repro.data.synth import write_voc
from repro.data.voc import voc_classes
from repro.errors import ReproError
from repro.methods.rcnn import regions as rcnn_regions
from repro.methods.rcnn.regions import (
    finetune_labels,
    proposal_cache_dir,
    svm_negatives,
    warp_windows,
)
from repro.methods.rcnn.system import proposal_counts
from repro.methods.region_proposals import selective_search_available
from repro.suites.accuracy import reasons, suite
from repro.suites.dataset import dataset_not_run_reason, measure_dataset_claims
from repro.train.rcnn import measure_rcnn

needs_ss = pytest.mark.skipif(
    not selective_search_available(), reason="opencv-contrib (cv2.ximgproc) not installed"
)
SIZE = 64  # window input size in the tests (the paper: 227)


class TinyNet(nn.Module):
    """A 1000-way classifier with an ``fc8``, standing in for AlexNet."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten()
        )
        self.fc7 = nn.Sequential(nn.Linear(128, 32), nn.ReLU())
        self.fc8 = nn.Linear(32, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.fc7(self.features(x)))


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_voc(tmp_path_factory.mktemp("voc"), splits={"trainval": 4, "test": 4}, seed=0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(TinyNet().state_dict(), path)
    return str(path)


def recipe(name: str = "rcnn-alexnet-svm-voc2007"):
    paper = load_paper("rcnn")
    base = next(r for r in paper.recipes if r.name == name)
    return base.model_copy(update={"input_size": SIZE, "batch_size": 16, "epochs": 0.5})


def test_finetune_labels_by_iou_on_hand_made_boxes() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    gt_labels = torch.tensor([3, 5])
    windows = torch.tensor(
        [
            [0.0, 0, 10, 10],  # IoU 1 with gt 0
            [0.0, 0, 10, 5],  # IoU 0.5 with gt 0: positive (>= 0.5)
            [0.0, 0, 10, 4],  # IoU 0.4: background
            [20.0, 20, 40, 30],  # IoU 0.5 with gt 1
            [50.0, 50, 60, 60],  # no overlap
        ]
    )
    assert finetune_labels(windows, gt, gt_labels).tolist() == [4, 4, 0, 6, 0]
    assert finetune_labels(windows, gt[:0], gt_labels[:0]).tolist() == [0] * 5


def test_svm_negatives_below_03_to_every_box_of_the_class() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 10, 10]])
    gt_labels = torch.tensor([1, 1, 2])
    windows = torch.tensor(
        [
            [0.0, 0, 10, 3],  # IoU 0.3 with gt 0: not a negative (grey zone starts at 0.3)
            [0.0, 0, 10, 2],  # IoU 0.2: negative
            [20.0, 20, 40, 40],  # on gt 1: not a negative of class 1
            [50.0, 50, 60, 60],  # far from everything: negative
        ]
    )
    assert svm_negatives(windows, gt, gt_labels, 1).tolist() == [False, True, False, True]
    assert svm_negatives(windows, gt, gt_labels, 2).tolist() == [False, True, True, True]
    assert svm_negatives(windows, gt, gt_labels, 7).tolist() == [True] * 4


def test_warp_puts_the_box_inside_its_context_and_mirrors() -> None:
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    image[:, :, :20] = 255  # left half white
    box = torch.tensor([[0.0, 0, 40, 40]])
    plain = warp_windows(image, box, SIZE)
    flipped = warp_windows(image, box, SIZE, flip=torch.tensor([True]))
    assert plain.shape == (1, 3, SIZE, SIZE)
    assert torch.allclose(flipped, plain.flip(-1))
    # the context band outside the image is the mean pixel: zero after subtraction
    assert plain[0, :, SIZE // 2, 0].abs().max() < 1e-4
    assert plain[0, 0, SIZE // 2, SIZE // 4] > 100  # inside the white half


@needs_ss
def test_proposal_cache_is_reused(
    voc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = rcnn_regions.selective_search

    def counting(image: np.ndarray) -> np.ndarray:
        calls.append(image.shape)
        return real(image)

    monkeypatch.setattr(rcnn_regions, "selective_search", counting)
    cache = proposal_cache_dir(tmp_path, "voc2007", voc, "test")
    first = proposal_counts(str(voc), "test", limit=3, cache_dir=cache, processes=1)
    assert len(calls) == 3 and len(first) == 3 and min(first) > 0
    assert (cache / rcnn_regions.PROPOSALS_FILE).is_file()
    second = proposal_counts(str(voc), "test", limit=3, cache_dir=cache, processes=1)
    assert len(calls) == 3  # all from the cache
    assert second == first
    proposal_counts(str(voc), "test", limit=4, cache_dir=cache, processes=1)
    assert len(calls) == 4  # only the new image


@needs_ss
@pytest.mark.parametrize("classifier", ["svm", "softmax"])
def test_measure_rcnn_end_to_end(voc: Path, weights: str, tmp_path: Path, classifier: str) -> None:
    settings = AccuracySettings(workers=0, storage=str(tmp_path))
    runs, note = measure_rcnn(
        recipe(),
        str(voc),
        weights,
        settings,
        classifier,
        build=TinyNet,
        max_proposals=24,
        processes=1,
        retrain_limit=20,
    )
    assert len(runs) == 1 and set(runs[0]) == {"map"}
    assert math.isfinite(runs[0]["map"]) and 0 <= runs[0]["map"] <= 100
    assert "4 test images" in note and ("SVC" in note) == (classifier == "svm")
    assert "did not decode" not in note
    if classifier == "svm":
        # hard negative mining retrained some class mid-pass, beyond the final training of each
        trainings = int(re.search(r"(\d+) SVM trainings", note).group(1))
        assert trainings > len(voc_classes(voc))


@needs_ss
def test_corrupt_eval_image_is_skipped_and_counted(voc: Path, weights: str, tmp_path: Path) -> None:
    root = tmp_path / "VOC2007"
    shutil.copytree(voc, root)
    test_ids = (root / "ImageSets" / "Main" / "test.txt").read_text().split()
    (root / "JPEGImages" / f"{test_ids[0]}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    settings = AccuracySettings(workers=0, storage=str(tmp_path / "runs"), eval_limit=3, seeds=2)
    runs, note = measure_rcnn(
        recipe("rcnn-alexnet-softmax-voc2007").model_copy(update={"epochs": 0.2}),
        str(root),
        weights,
        settings,
        "softmax",
        build=TinyNet,
        max_proposals=16,
        processes=1,
    )
    assert len(runs) == 2 and all(0 <= r["map"] <= 100 for r in runs)
    assert "1 image(s) did not decode" in note
    assert "2 test images" in note and "first 3 images" in note


def test_unknown_classifier_is_refused(voc: Path, tmp_path: Path) -> None:
    settings = AccuracySettings(workers=0, storage=str(tmp_path))
    with pytest.raises(ReproError, match="window classifier"):
        measure_rcnn(recipe(), str(voc), "w.pt", settings, "boosting", build=TinyNet)


def test_suite_runs_rcnn_claims_with_imagenet_weights_else_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paper = load_paper("rcnn")
    ids = ("alexnet-svm-voc2007-map", "alexnet-softmax-voc2007-map")
    claims = [c for c in paper.claims if c.id in ids]
    reason = reasons.not_run_reason(paper, claims[0], AccuracySettings(), {})
    assert reason is not None and "ImageNet-trained alexnet_single" in reason
    settings = AccuracySettings(weights={"alexnet_single": str(tmp_path / "in.pt")})
    assert all(reasons.not_run_reason(paper, c, settings, {}) is None for c in claims)

    seen = []

    def fake(recipe, root, weights, _settings, classifier):
        seen.append((recipe.name, weights, classifier))
        return [{"map": 40.0 if classifier == "svm" else 30.0}], f"fake {classifier}"

    monkeypatch.setattr(suite, "measure_rcnn", fake)
    groups = suite.group_accuracy_claims(paper, claims, settings, {"voc2007": str(tmp_path)})
    results = {r.claim_id: r for g in groups for r in suite.measure_accuracy_group(g).results}
    assert sorted(c for *_, c in seen) == ["softmax", "svm"]
    assert {w for _, w, _ in seen} == {str(tmp_path / "in.pt")}
    assert float(results["alexnet-svm-voc2007-map"].measured) == 40.0
    assert float(results["alexnet-softmax-voc2007-map"].measured) == 30.0


@needs_ss
def test_dataset_suite_counts_selective_search_proposals(
    voc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPRO_ACCURACY_STORAGE", str(tmp_path / "runs"))
    claim = next(c for c in load_paper("rcnn").claims if c.id == "selective-search-proposals")
    assert dataset_not_run_reason(claim) is None
    (result,) = measure_dataset_claims("rcnn", [claim], {"voc2007": str(voc)}).results
    # flat synthetic shapes give far fewer regions than VOC photographs: measured, deviates
    assert result.verdict == "deviates" and 0 < float(result.measured) < 1500, result.note
    assert "selective search (fast mode)" in result.note
    assert any((tmp_path / "runs").rglob("proposals.npz"))

    # the accuracy settings' storage (params.yaml accuracy.storage) holds the cache R-CNN reads
    settings = AccuracySettings(storage=str(tmp_path / "other"))
    cache_claim = next(c for c in load_paper("rcnn").claims if c.id == "pool5-feature-cache")
    (cached,) = measure_dataset_claims(
        "rcnn", [cache_claim], {"voc2007": str(voc)}, settings
    ).results
    cache = proposal_cache_dir(tmp_path / "other" / "rcnn-proposals", "voc2007", voc, "trainval")
    assert (cache / rcnn_regions.PROPOSALS_FILE).is_file()
    counts = proposal_counts(str(voc), "trainval", cache_dir=cache)
    assert float(cached.measured) == pytest.approx(4 * 256 * 6 * 6 * sum(counts) / 1e9, abs=1e-6)
    assert "fp32 values of alexnet_single pool5" in cached.note
