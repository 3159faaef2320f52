"""MNIST's IDX files: written by `repro data synth mnist` from real handwritten digits, read by
repro.data.mnist as torchvision reads them (the trainer's items unchanged), verified (counts,
truncated or missing files named), and counted for LeNet's dataset claims."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torchvision import datasets
from torchvision.transforms.v2 import functional as TF

from repro.claims import load_paper
from repro.data import mnist
from repro.data.synth import write_mnist
from repro.data.training_sets import LENET_MEAN, LENET_STD, MNIST_PAD, load_dataset
from repro.data.verify import verify_dataset
from repro.suites.dataset import dataset_not_run_reason, measure_dataset_claims


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_mnist(tmp_path / "mnist", per_split={"train": 30, "test": 12}, seed=0)


def test_synthetic_mnist_reads_as_torchvision_reads_it(root: Path) -> None:
    train = datasets.MNIST(str(root), train=True, download=False)
    test = datasets.MNIST(str(root), train=False, download=False)
    assert (len(train), len(test)) == (30, 12)
    image, label = train[0]
    assert image.size == (28, 28) and 0 <= label <= 9
    assert int(mnist.load_split(root, "train").labels[0]) == label


def test_verify_counts_and_names_what_is_wrong(root: Path) -> None:
    report = verify_dataset("mnist", root, progress=False)
    assert report.splits["train"]["images"] == 30 and report.splits["test"]["images"] == 12
    assert report.classes == list(mnist.SETS["mnist"].classes) == datasets.MNIST.classes
    assert report.problems.counts() == {"count-mismatch": 2}  # 30 is not MNIST's 60,000

    raw = root / "MNIST" / "raw"
    images = raw / mnist.FILES["train"][0]
    images.write_bytes(images.read_bytes()[:-5])  # truncated
    (raw / mnist.FILES["test"][1]).unlink()  # a missing label file
    report = verify_dataset("mnist", root, progress=False)
    truncated = report.problems.of_kind("truncated-annotation")
    missing = report.problems.of_kind("missing-split")
    assert [Path(p.path).name for p in truncated] == [images.name]
    assert [Path(p.path).name for p in missing] == [mnist.FILES["test"][1]]
    assert report.splits == {}


def test_lenet_dataset_claims_are_counted_on_mnist(root: Path) -> None:
    claims = [c for c in load_paper("lenet").claims if c.kind == "dataset"]
    assert {c.id for c in claims} == {"mnist-classes", "training-data-size"}
    assert all(dataset_not_run_reason(c) is None for c in claims)
    results = {
        r.claim_id: r for r in measure_dataset_claims("lenet", claims, {"mnist": str(root)}).results
    }
    assert results["mnist-classes"].verdict == "reproduced"
    assert float(results["training-data-size"].measured) == pytest.approx(0.03)  # 30 images, in K


def test_a_wrong_magic_number_is_named(tmp_path: Path, root: Path) -> None:
    raw = root / "MNIST" / "raw"
    shutil.copy(raw / mnist.FILES["train"][1], raw / mnist.FILES["train"][0])  # labels as images
    with pytest.raises(Exception, match="not an IDX file of 3 dimension"):
        mnist.load_split(root, "train")


def test_mnist_items_are_torchvision_s_padded_and_normalised(root: Path) -> None:
    for split, train in (("train", True), ("test", False)):
        ours, classes = load_dataset("mnist", root, split)
        theirs = datasets.MNIST(str(root), train=train, download=False)
        assert classes == theirs.classes and len(ours) == len(theirs)
        assert torch.equal(ours.data, theirs.data) and torch.equal(ours.targets, theirs.targets)
        for i in range(len(theirs)):
            image, label = theirs[i]
            x, y = ours[i]
            want = TF.pad(TF.pil_to_tensor(image), [MNIST_PAD]).float() / 255.0
            assert y == label and x.shape == (1, 32, 32)
            assert torch.allclose(x, (want - LENET_MEAN) / LENET_STD)
