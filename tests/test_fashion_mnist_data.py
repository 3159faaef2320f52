"""Fashion-MNIST (and MNIST) through the one IDX reader: gzipped or plain files, flat or in
torchvision's folders, read alike by verify, stats and training; content digests that tell the
published set from zeros and from MNIST; every bad input a named error or a counted problem.
The real-data tests read Debian's dataset-fashion-mnist where it is installed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from repro import cli
from repro.config import parse_settings
from repro.data import mnist
from repro.data.roots import data_root
from repro.data.training_sets import FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_dataset
from repro.data.verify import verify_dataset
from repro.errors import DataError, ReproError

REAL = Path("/usr/share/datasets/fashion-mnist")
needs_real = pytest.mark.skipif(
    not (REAL / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not installed at {REAL} (apt-get install dataset-fashion-mnist)",
)
CLOTHES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
LAYOUTS = {"flat": ".", "raw": "raw", "torchvision": "FashionMNIST/raw"}


def tiny(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return images, (np.arange(n) % 10).astype(np.uint8)


def write_set(root: Path, layout: str = "flat", gz: bool = True, sizes=(20, 10)) -> Path:
    folder = root / LAYOUTS.get(layout, layout)
    for seed, (split, n) in enumerate(zip(("train", "test"), sizes, strict=True)):
        mnist.write_split(folder, split, *tiny(n, seed), gz=gz)
    return root


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return code, text


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("gz", [True, False])
def test_every_layout_reads_alike_in_verify_and_training(
    tmp_path: Path, layout: str, gz: bool
) -> None:
    root = write_set(tmp_path, layout, gz)
    images, labels = tiny(20, 0)
    split = mnist.load_split(root, "train", "fashion_mnist")
    assert split.images.dtype == np.uint8 and split.images.shape == (20, 28, 28)
    assert np.array_equal(split.images, images) and np.array_equal(split.labels, labels)
    assert split.files[0].name == "train-images-idx3-ubyte" + (".gz" if gz else "")
    report = verify_dataset("fashion_mnist", root, progress=False)
    assert {s: v["images"] for s, v in report.splits.items()} == {"train": 20, "test": 10}
    assert report.classes == CLOTHES and report.root == mnist.idx_folder(root, "fashion_mnist")
    dataset, classes = load_dataset("fashion_mnist", root, "train")
    assert classes == CLOTHES and len(dataset) == 20
    x, y = dataset[3]
    assert x.shape == (1, 28, 28) and y == 3  # its own 28x28, no padding
    want = (torch.from_numpy(images[3]).float() / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    assert torch.allclose(x[0], want)
    test, _ = load_dataset("fashion_mnist", root, "t10k")  # the files' own name of the split
    assert len(test) == 10


def test_the_layout_rule_prefers_torchvision_s_folder_and_plain_files(tmp_path: Path) -> None:
    write_set(tmp_path, "flat", gz=True, sizes=(4, 2))
    write_set(tmp_path, "torchvision", gz=True, sizes=(6, 2))
    assert mnist.idx_folder(tmp_path, "fashion_mnist") == tmp_path / "FashionMNIST" / "raw"
    assert mnist.idx_folder(tmp_path, "mnist") == tmp_path  # MNIST/raw absent: the flat files
    folder = tmp_path / "FashionMNIST" / "raw"
    mnist.write_split(folder, "train", *tiny(8, 5), gz=False)  # beside the .gz: read first
    assert len(mnist.load_split(tmp_path, "train", "fashion_mnist").images) == 8


def test_verify_reports_digests_classes_and_pixels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_set(tmp_path)
    report = verify_dataset("fashion_mnist", root, progress=False)
    images, labels = tiny(20, 0)
    train = report.content["train"]
    assert train["sha256"] == mnist.content_sha256(images, labels)
    assert train["published_sha256"] == mnist.SETS["fashion_mnist"].digests["train"]
    assert train["per_class"] == dict.fromkeys(CLOTHES, 2)
    assert train["pixel_mean"] == pytest.approx(images.mean() / 255, abs=1e-6)
    assert train["pixel_std"] == pytest.approx((images / 255).std(), abs=1e-6)
    # 20 random images are neither the published counts nor the published content
    assert report.problems.counts() == {"count-mismatch": 2, "content-mismatch": 2}
    assert report.manifest()["content"]["test"]["per_class"]["Ankle boot"] == 1
    code, out = run_cli(["data", "verify", "fashion_mnist", "--root", str(root), "--quiet",
                         "--manifest", str(tmp_path / "m.json")], capsys)  # fmt: skip
    assert code == 1 and "NOT the published files" in out and "Ankle boot" in out
    code, out = run_cli(["data", "stats", "fashion_mnist", "--root", str(root)], capsys)
    assert code == 0 and '"num_images": 20' in out and '"num_classes": 10' in out


def test_an_all_zero_set_of_the_published_size_is_not_the_published_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for split, n in mnist.PUBLISHED.items():
        if split in mnist.FILES:
            zeros = np.zeros((n, 28, 28), np.uint8)
            mnist.write_split(tmp_path, split, zeros, np.zeros(n, np.uint8), gz=True)
    report = verify_dataset("fashion_mnist", tmp_path, progress=False)
    assert report.problems.counts() == {"content-mismatch": 2}  # the counts are right
    assert "is not the published Fashion-MNIST train split" in report.problems.items[0].detail
    code, out = run_cli(["data", "verify", "fashion_mnist", "--root", str(tmp_path), "--quiet",
                         "--manifest", str(tmp_path / "m.json")], capsys)  # fmt: skip
    assert code == 1 and "ok: no problems" not in out and "content-mismatch: 2" in out


def test_mnist_where_fashion_mnist_was_named_is_told_by_its_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "mnist"  # flat: MNIST/raw is not where fashion_mnist's files are looked for
    mnist.write_split(root, "train", *tiny(20, 0))
    mnist.write_split(root, "test", *tiny(10, 1))
    digests = {
        "train": mnist.content_sha256(*tiny(20, 0)),
        "test": mnist.content_sha256(*tiny(10, 1)),
    }
    monkeypatch.setitem(mnist.SETS, "mnist", mnist.SETS["mnist"].__class__(
        **{**mnist.SETS["mnist"].__dict__, "digests": digests}))  # fmt: skip
    assert not verify_dataset("mnist", root, progress=False).problems.of_kind("content-mismatch")
    with pytest.raises(DataError, match="holds MNIST's train split where Fashion-MNIST"):
        verify_dataset("fashion_mnist", root, progress=False)
    with pytest.raises(DataError, match="holds MNIST's test split where Fashion-MNIST"):
        load_dataset("fashion_mnist", root, "test")
    code, out = run_cli(["data", "verify", "fashion_mnist", "--root", str(root), "--quiet",
                         "--manifest", str(tmp_path / "m.json")], capsys)  # fmt: skip
    assert code == 2 and "error:" in out and "name mnist" in out


def test_a_full_mnist_train_split_is_told_by_its_pixel_statistics(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    images, labels = tiny(20, 0)
    mnist.write_split(tmp_path, "train", images, labels)
    split = mnist.load_split(tmp_path, "train", "fashion_mnist")
    mnist.check_identity("fashion_mnist", "train", split)  # random pixels: not MNIST's
    monkeypatch.setitem(mnist.PUBLISHED, "train", 20)
    monkeypatch.setattr(mnist, "MNIST_TRAIN_PIXELS", mnist.pixel_stats(images))
    with pytest.raises(DataError, match="holds MNIST's train split"):
        mnist.check_identity("fashion_mnist", "train", split)


def _truncate_gz(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def _corrupt_gz(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[30:60] = bytes(30)
    path.write_bytes(bytes(data))


def _not_gzip(path: Path) -> None:
    path.write_bytes(b"this is not gzip at all")


def _fewer_labels(path: Path) -> None:
    mnist.write_idx(path, tiny(20, 0)[1][:15])


def _label_eleven(path: Path) -> None:
    labels = tiny(20, 0)[1]
    labels[7] = 11
    mnist.write_idx(path, labels)


@pytest.mark.parametrize(
    ("damage", "file", "kind", "words"),
    [
        (_truncate_gz, 0, "truncated-annotation", "ends early"),
        (_corrupt_gz, 0, "corrupt-file", "not a readable gzip file"),
        (_not_gzip, 1, "corrupt-file", "not a readable gzip file"),
        (_fewer_labels, 1, "bad-annotation", "15 labels for the 20 images"),
        (_label_eleven, 1, "bad-annotation", "label(s) outside 0-9 (the first, 11, at index 7)"),
    ],
)
def test_bad_input_is_a_named_error_or_a_counted_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage, file, kind, words
) -> None:
    root = write_set(tmp_path / "fm")
    path = tmp_path / "fm" / (mnist.FILES["train"][file] + ".gz")
    damage(path)
    report = verify_dataset("fashion_mnist", root, progress=False)
    found = report.problems.of_kind(kind)
    assert [Path(p.path).name for p in found] == [path.name] and words in found[0].detail
    assert str(path) not in found[0].detail  # the path is the problem's, not repeated
    assert "train" not in report.splits and report.splits["test"]["images"] == 10
    with pytest.raises(DataError, match=path.name) as err:
        load_dataset("fashion_mnist", root, "train")
    assert words in err.value.cause and err.value.fix
    code, out = run_cli(["data", "verify", "fashion_mnist", "--root", str(root), "--quiet",
                         "--manifest", str(tmp_path / "m.json")], capsys)  # fmt: skip
    assert code == 1 and path.name in out


def test_a_truncated_plain_file_and_missing_files_are_named(tmp_path: Path) -> None:
    root = write_set(tmp_path, gz=False)
    labels = root / mnist.FILES["test"][1]
    labels.write_bytes(labels.read_bytes()[:-3])
    report = verify_dataset("fashion_mnist", root, progress=False)
    assert [Path(p.path).name for p in report.problems.of_kind("truncated-annotation")] == [
        labels.name
    ]
    (root / mnist.FILES["train"][0]).unlink()
    report = verify_dataset("fashion_mnist", root, progress=False)
    assert report.problems.of_kind("missing-split")[0].path.endswith("train-images-idx3-ubyte")
    with pytest.raises(DataError, match="fashion_mnist is not under") as err:
        load_dataset("fashion_mnist", root, "train")
    assert "dataset-fashion-mnist" in err.value.fix
    with pytest.raises(ReproError, match="no split 'val'"):
        load_dataset("fashion_mnist", root, "val")


def test_gzip_errors_name_the_file_cause_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "x-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(8))[:-9])
    with pytest.raises(mnist.IdxError) as err:
        mnist.read_idx(path, mnist.LABELS_MAGIC)
    assert err.value.path == path and str(path) in err.value.cause and "gzip -t" in err.value.fix


def test_fashion_mnist_s_root_defaults_to_debian_s_folder() -> None:
    roots = parse_settings("", env={}).data_roots
    assert data_root("fashion_mnist", roots) == str(REAL)
    env = {"REPRO_DATA_FASHION_MNIST": "/elsewhere"}
    assert parse_settings("", env=env).data_roots["fashion_mnist"] == "/elsewhere"


@needs_real
def test_the_installed_fashion_mnist_is_the_published_set(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = verify_dataset("fashion_mnist", REAL, progress=False)
    assert report.ok, report.problems.summary()
    assert {s: v["images"] for s, v in report.splits.items()} == {"train": 60000, "test": 10000}
    assert report.classes == CLOTHES
    for split, n in (("train", 6000), ("test", 1000)):
        content = report.content[split]
        assert content["sha256"] == mnist.SETS["fashion_mnist"].digests[split]
        assert content["per_class"] == dict.fromkeys(CLOTHES, n)
    # the normalisation constants are the train split's pixel statistics
    assert report.content["train"]["pixel_mean"] == pytest.approx(FASHION_MNIST_MEAN, abs=1e-6)
    assert report.content["train"]["pixel_std"] == pytest.approx(FASHION_MNIST_STD, abs=1e-6)
    code, out = run_cli(["data", "verify", "fashion_mnist", "--quiet",
                         "--manifest", str(tmp_path / "m.json")], capsys)  # fmt: skip
    assert code == 0 and "60000" in out and "Ankle boot 6000" in out and "(the published" in out
    code, out = run_cli(["data", "stats", "fashion_mnist"], capsys)
    assert code == 0 and '"num_images": 60000' in out and '"train_images_per_class": 6000' in out


@needs_real
def test_the_installed_fashion_mnist_trains_normalised(tmp_path: Path) -> None:
    train, classes = load_dataset("fashion_mnist", str(REAL), "train")
    test, _ = load_dataset("fashion_mnist", str(REAL), "test")
    assert (len(train), len(test), classes) == (60000, 10000, CLOTHES)
    batch = torch.stack([train[i][0] for i in range(0, 60000, 60)])
    assert abs(float(batch.mean())) < 0.05 and abs(float(batch.std()) - 1) < 0.05
    # swapped splits are told apart too: the test files where the train files should be
    for ours, theirs in zip(mnist.FILES["train"], mnist.FILES["test"], strict=True):
        (tmp_path / f"{ours}.gz").symlink_to(REAL / f"{theirs}.gz")
    split = mnist.load_split(tmp_path, "train", "fashion_mnist")
    digest = mnist.content_sha256(split.images, split.labels)
    assert mnist.published_as(digest) == ("fashion_mnist", "test")
    report = verify_dataset("fashion_mnist", tmp_path, progress=False)
    assert "it is the published test split" in report.problems.of_kind("content-mismatch")[0].detail
    # and Fashion-MNIST named as MNIST is refused, not trained on under digit names
    with pytest.raises(DataError, match="holds Fashion-MNIST's test split where MNIST was named"):
        load_dataset("mnist", str(REAL), "test")
