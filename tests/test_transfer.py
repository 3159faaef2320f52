"""SUN-397's reader and DeCAF's transfer protocol (frozen features + a linear classifier) on a
small SUN-397 copy written by the test in the dataset's own layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from repro.claims import Claim, load_paper, load_paper_file
from repro.config import AccuracySettings
from repro.data import sun397
from repro.data.synth import SUN397_CLASSES, write_sun397
from repro.data.verify import verify_dataset
from repro.errors import DataError, ReproError
from repro.measure import measure_paper_local
from repro.methods.transfer import (
    classifier_of,
    extract_features,
    linear_accuracy,
    measure_transfer,
    metric_key,
)
from repro.models import build_model
from repro.recipes import Recipe
from repro.runner.plan import plan_paper
from repro.runner.settings import RunSettings


@pytest.fixture(scope="module")
def sun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sun397(tmp_path_factory.mktemp("sun"), per_class=8, train_per_class=3,
                        test_per_class=3, partitions=2)  # fmt: skip


def _recipe(name: str = "decaf-logreg-sun397") -> Recipe:
    return Recipe.model_validate(
        {
            "name": name,
            "model": "alexnet",
            "model_kwargs": {"num_classes": 5},
            "dataset": "sun397",
            "train_split": "train",
            "eval_split": "test",
            "source": {"seed": "004", "section": "DeCAF"},
            "optimizer": {"name": "sgd", "lr": 0.01},
            "schedule": {"name": "constant"},
            "batch_size": 8,
            "epochs": 1,
            "input_size": 227,
            "evaluation": {"resize": 256, "crop": 227, "crops": 1, "metric": "top1_error"},
        }
    )


def _claim(layer: str) -> Claim:
    return Claim.model_validate(
        {
            "id": f"t-{layer}",
            "table": "t",
            "row": layer,
            "metric": "accuracy",
            "unit": "%",
            "value": 40.0,
            "kind": "accuracy",
            "tolerance": {"abs": 0.3},
            "source": {"seed": "004", "section": "DeCAF"},
            "model": "alexnet",
            "layer": layer,
            "dataset": "sun397",
            "recipe": "decaf-logreg-sun397",
        }
    )


def test_sun397_partitions_read_classes_and_disjoint_splits(sun: Path) -> None:
    assert sun397.available_partitions(sun.parent) == [1, 2]  # found from the parent folder too
    train = sun397.load_split(sun, 1, "train")
    test = sun397.load_split(sun, 1, "test")
    assert train.classes == list(SUN397_CLASSES)
    assert len(train.paths) == len(test.paths) == 3 * len(SUN397_CLASSES)
    assert not set(train.paths) & set(test.paths)
    nested = SUN397_CLASSES.index("/s/square/indoor")
    for path, label in zip(train.paths, train.labels, strict=True):
        assert path.is_file()
        assert ("square/indoor" in str(path)) == (label == nested)
    assert sun397.load_split(sun, 2, "train").paths != train.paths


def test_sun397_errors_name_the_file_at_fault(sun: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ClassName.txt"):
        sun397.find_root(tmp_path)
    with pytest.raises(DataError, match="Training_03.txt"):
        sun397.load_split(sun, 3, "train")
    broken = write_sun397(tmp_path / "b", per_class=2, train_per_class=1, test_per_class=1,
                          partitions=1)  # fmt: skip
    listing = broken / "Partitions" / "Testing_01.txt"
    listing.write_text(listing.read_text() + "/z/zoo/sun_x.jpg\n")
    with pytest.raises(DataError, match=r"Testing_01.txt, line 4: /z/zoo"):
        sun397.load_split(broken, 1, "test")


def test_classifier_comes_from_the_recipe_name() -> None:
    assert classifier_of(_recipe("decaf-logreg-sun397")) == "logreg"
    assert classifier_of(_recipe("decaf-svm-sun397")) == "svm"
    with pytest.raises(ReproError, match="names no linear classifier"):
        classifier_of(_recipe("decaf-sun397"))


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_linear_classifiers_separate_separable_features(kind: str) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (4, 16))
    y = np.repeat(np.arange(4), 20)
    x = centres[y] + rng.normal(0, 0.3, (80, 16))
    assert linear_accuracy(kind, x[::2], y[::2].tolist(), x[1::2], y[1::2].tolist()) == 100.0
    shuffled = rng.permutation(y)  # labels unrelated to the features: near chance, not 100
    assert linear_accuracy(kind, x[::2], shuffled[::2].tolist(), x[1::2],
                           shuffled[1::2].tolist()) < 75.0  # fmt: skip


def test_features_are_the_layer_outputs_and_corrupt_images_are_skipped(
    sun: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = build_model("alexnet", num_classes=5)
    paths = sun397.load_split(sun, 1, "train").paths[:3]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    images = torch.rand(3, 3, 227, 227)
    feats, kept = extract_features(
        model, ["fc6", "fc7"], [paths[0], bad, paths[1]],
        lambda _im: images[0], batch_size=2, loader_workers=0,
    )  # fmt: skip
    assert kept == [0, 2]
    model.eval()
    with torch.no_grad():
        x = images[:1]
        for name in ("conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4",
                     "conv5", "pool5"):  # fmt: skip
            x = getattr(model, name)(x)
        x = torch.flatten(x, 1)
        fc6 = model.fc6(x)
        fc7 = model.fc7(fc6)
    assert feats["fc6"].shape == (2, 4096)
    np.testing.assert_allclose(feats["fc6"][1], fc6[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(feats["fc7"][0], fc7[0].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ReproError, match="no layer fc9"):
        extract_features(model, ["fc9"], paths, lambda im: im, loader_workers=0)


def test_measure_transfer_gives_one_run_per_partition(sun: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "alexnet.pt"
    torch.save(build_model("alexnet", num_classes=5).state_dict(), weights)
    first = sun397.load_split(sun, 2, "test").paths[0]
    original = first.read_bytes()
    first.write_bytes(original[:40])  # truncated JPEG in partition 2 only
    try:
        runs, note = measure_transfer(
            _recipe(), [_claim("fc6"), _claim("fc7")], str(sun.parent), str(weights),
            AccuracySettings(), loader_workers=0,
        )  # fmt: skip
    finally:
        first.write_bytes(original)
    assert len(runs) == 2
    for run in runs:
        assert set(run) == {metric_key("fc6"), metric_key("fc7")}
        assert all(0.0 <= v <= 100.0 for v in run.values())
    assert "partitions [1, 2]" in note and "1 image(s) did not decode" in note
    with pytest.raises(ReproError, match=r"partition\(s\) \[7\]"):
        measure_transfer(_recipe(), [_claim("fc6")], str(sun), str(weights), AccuracySettings(),
                         partitions=[7], loader_workers=0)  # fmt: skip


def test_verify_sun397_reports_problems_and_counts(sun: Path, tmp_path: Path) -> None:
    report = verify_dataset("sun397", sun.parent, progress=False, workers=1)
    assert report.ok, report.problems.items
    assert set(report.splits) == {"train_01", "test_01", "train_02", "test_02"}
    assert report.splits["train_01"]["images"] == 3 * len(SUN397_CLASSES)
    assert report.stats["num_images"] == 6 * len(SUN397_CLASSES)  # partition 1 only
    copy = shutil.copytree(sun, tmp_path / "SUN397")
    victim = sun397.load_split(copy, 1, "test").paths[0]
    victim.write_bytes(b"\xff\xd8 broken")
    gone = next(p for p in sun397.load_split(copy, 2, "train").paths if p != victim)
    gone.unlink()
    damaged = verify_dataset("sun397", copy, progress=False, workers=1)
    counts = damaged.problems.counts()
    assert counts.get("corrupt-image") == 1 and counts.get("missing-image", 0) >= 1
    assert [p.path for p in damaged.problems.of_kind("corrupt-image")] == [str(victim)]
    assert str(gone) in {p.path for p in damaged.problems.of_kind("missing-image")}


def test_decaf_claims_run_through_the_suite_with_weights(sun: Path, tmp_path: Path) -> None:
    """decaf.yaml's claims: not-run without ImageNet weights (the reason says how to give
    them); with weights and a SUN-397 root, measured per partition and judged."""
    roots = {"sun397": str(sun.parent)}
    plan = plan_paper(
        load_paper("decaf"), RunSettings(("accuracy",), roots, accuracy=AccuracySettings())
    )
    reasons = {r.claim_id: r.note for r in plan.not_run}
    assert "weights: {alexnet: PATH}" in reasons["decaf6-logreg"]
    assert not plan.of("accuracy")
    # the real recipes with a 5-class alexnet (the test's weights file stays small)
    data = yaml.safe_load(Path(load_paper("decaf").path).read_text())
    for recipe in data["recipes"]:
        recipe["model_kwargs"] = {"num_classes": 5}
    path = tmp_path / "decaf.yaml"
    path.write_text(yaml.safe_dump(data))
    paper = load_paper_file(path)
    torch.manual_seed(0)
    weights = tmp_path / "alexnet5.pt"
    torch.save(build_model("alexnet", num_classes=5).state_dict(), weights)
    settings = AccuracySettings(workers=0, weights={"alexnet": str(weights)})
    results = {
        r.claim_id: r
        for r in measure_paper_local(paper, ["accuracy"], roots, accuracy=settings)
        if r.kind == "accuracy"
    }
    for claim_id in ("decaf6-logreg", "decaf7-logreg", "decaf6-svm", "decaf7-svm"):
        result = results[claim_id]
        assert result.verdict in ("reproduced", "deviates"), result.note
        assert 0.0 <= float(result.measured) <= 100.0
        assert "mean of 2 runs" in result.note and "partitions [1, 2]" in result.note
    assert results["xiao2010-baseline"].verdict == "not-run"
