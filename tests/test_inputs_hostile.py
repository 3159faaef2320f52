"""Training, bench and data readers met with hostile input (issue 27): a batch size beyond any
memory, a learning rate that is not one, 0-byte, truncated and mislabelled images, a symlink
loop and the image suffixes a class folder may hold. Each gives a named error or a counted,
logged skip, never a traceback; every image is 8x8 and written here."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, ImageFolder

from repro.bench import memory
from repro.bench.config import BenchConfig
from repro.bench.runner import benchmark
from repro.cli import main
from repro.data import image_files
from repro.data.image_files import IMAGE_SUFFIXES, UnreadableImages, walk_images
from repro.data.throughput import measure_decode
from repro.data.verify import verify_dataset
from repro.errors import DataError, ReproError
from repro.models import get_model_spec
from repro.train.config import TrainConfig
from repro.train.data import Shard, SkippingImageFolder, image_folder_batches
from repro.train.distributed import run_training


def _image(path: Path, shade: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if path.suffix == ".pgm" else "RGB"
    Image.new(mode, (8, 8), shade if mode == "L" else (shade, 9, 9)).save(path, format=fmt)
    return path


def _truncated_jpeg(path: Path) -> Path:
    _image(path, 200)
    path.write_bytes(path.read_bytes()[:200])
    return path


# --- training: --lr, and a loss that turns non-finite -----------------------------------------


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -1.0, 0.0])
def test_a_learning_rate_that_is_not_finite_and_positive_is_refused(lr: float) -> None:
    with pytest.raises(ReproError, match="--lr") as info:
        TrainConfig(model="lenet5", lr=lr)
    assert "positive" in info.value.fix


def test_train_lr_minus_one_is_a_named_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "lenet5", "--workers", "0", "--no-mlflow", "--storage", str(tmp_path)]
    assert main([*argv, "--lr", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --lr -1.0 is not a finite positive") and "Traceback" not in err


def test_a_loss_that_turns_non_finite_stops_training_with_a_named_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "lenet5", "--workers", "0", "--no-mlflow", "--storage", str(tmp_path)]
    json_path = tmp_path / "result.json"
    code = main([*argv, "--lr", "1e30", "--steps", "4", "--json", str(json_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "training diverged" in err and "--lr" in err
    assert not json_path.exists()  # no result that looks like a finished run


def test_train_batch_size_one_billion_is_refused_before_a_batch_is_made(tmp_path: Path) -> None:
    config = TrainConfig(
        model="lenet5", batch_size=10**9, steps=1, workers=0, storage_path=str(tmp_path)
    )
    with pytest.raises(ReproError, match=r"--batch-size gives a worker 1000000000 images") as info:
        run_training(config)
    assert "GB is available" in info.value.cause and "--batch-size far below" in info.value.fix


# --- training on an ImageFolder with unreadable images --------------------------------------


def _folder_with_unreadable_images(root: Path) -> list[Path]:
    """Two classes of three good PNGs each and one bad image: 0 bytes, a truncated JPEG."""
    for c in ("cat", "dog"):
        for i in range(3):
            _image(root / c / f"{i}.png", 40 * i)
    bad = [root / "cat" / "empty.jpg", _truncated_jpeg(root / "dog" / "cut.jpg")]
    bad[0].write_bytes(b"")
    return bad


def test_an_unreadable_image_is_skipped_for_the_next_one_and_its_path_comes_along(
    tmp_path: Path,
) -> None:
    bad = _folder_with_unreadable_images(tmp_path)
    dataset = SkippingImageFolder(str(tmp_path))
    at = {Path(p): i for i, (p, _) in enumerate(dataset.samples)}
    image, target, skipped = dataset[at[bad[0]]]
    following = dataset.samples[at[bad[0]] + 1]
    assert image.size == (8, 8) and target == following[1]
    assert skipped.startswith(f"{bad[0]}\t") and "\n" not in skipped
    assert dataset[at[bad[0]] + 1][2] == ""  # a readable image skips nothing


@pytest.mark.faults
def test_training_skips_0_byte_and_corrupt_images_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fault_record
) -> None:
    """One global batch of the whole folder (8 files) with a DataLoader worker process: both
    bad images are met, skipped for the next one, counted once each and logged."""
    bad = _folder_with_unreadable_images(tmp_path / "data")
    config = TrainConfig(
        model="lenet5", batch_size=8, steps=2, workers=0, loader_workers=1,
        data_root=str(tmp_path / "data"), storage_path=str(tmp_path / "runs"),
    )  # fmt: skip
    t0 = time.perf_counter()
    with caplog.at_level("WARNING", logger="repro.data"):
        result = run_training(config)
    messages = [r.getMessage() for r in caplog.records]
    logged = {m.split(": ")[1] for m in messages if m.startswith("corrupt-image: ")}
    skipped = result.environment["skipped_images"]
    ok = len(result.history) == 2 and skipped == 2
    fault_record("0-byte and truncated images in training", ok, 0, 0, time.perf_counter() - t0)
    assert ok, (result.history, skipped)
    assert logged == {str(p) for p in bad}


def test_too_many_unreadable_images_in_a_row_is_a_named_error_from_a_loader_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised in a DataLoader worker process, torch raises it again with the worker's traceback
    as its text; the error keeps the cause alone."""
    monkeypatch.setattr(image_files, "MAX_UNREADABLE_IN_A_ROW", 2)  # forked workers inherit it
    for i in range(3):
        (tmp_path / "a" / f"{i}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "a" / f"{i}.jpg").write_bytes(b"not an image")
    _image(tmp_path / "b" / "0.png")
    dataset = SkippingImageFolder(str(tmp_path))
    order = image_folder_batches(dataset, 0, batch=4, seed=0, shard=Shard(), workers=1)
    with pytest.raises(UnreadableImages) as info:
        next(order)
    assert info.value.cause.startswith("2 images in a row do not decode, from ")
    assert "Traceback" not in info.value.cause and "repro data verify" in info.value.fix


# --- verify walks the files training reads ----------------------------------------------------


def test_the_image_suffixes_are_torchvisions() -> None:
    assert set(IMAGE_SUFFIXES) == set(IMG_EXTENSIONS)


def test_without_loops_training_reads_the_files_torchvisions_image_folder_reads(
    tmp_path: Path,
) -> None:
    for i, suffix in enumerate(IMAGE_SUFFIXES):
        _image(tmp_path / ("a" if i % 2 else "b") / "deeper" / f"{i}{suffix.upper()}", i)
    _image(tmp_path / "outside" / "x" / "0.png")
    os.symlink(tmp_path / "outside" / "x", tmp_path / "a" / "linked")  # followed by both
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    ours, theirs = SkippingImageFolder(str(tmp_path)), ImageFolder(str(tmp_path))
    assert ours.samples == theirs.samples and ours.classes == theirs.classes
    assert len(ours) == len(IMAGE_SUFFIXES) + 1 + 1  # the linked folder's image


def _tree_with_a_loop(root: Path) -> int:
    """ROOT/train/{cat,dog}: an image of every suffix torchvision reads, and cat/loop -> .."""
    n = 0
    for c in ("cat", "dog"):
        for i, suffix in enumerate(IMAGE_SUFFIXES):
            _image(root / "train" / c / f"{i}{suffix}", 20 * i)
            n += 1
    os.symlink("..", root / "train" / "cat" / "loop")
    return n


def test_verify_counts_what_training_reads_and_names_the_symlink_loop(tmp_path: Path) -> None:
    images = _tree_with_a_loop(tmp_path)
    report = verify_dataset("imagefolder", tmp_path, progress=False, workers=1)
    assert report.splits["train"]["images"] == images == report.decoded  # .tif, .webp, .pgm...
    assert report.problems.counts() == {"symlink-loop": 1}
    (loop,) = report.problems.of_kind("symlink-loop")
    assert loop.path == str(tmp_path / "train" / "cat" / "loop")
    assert not report.ok
    assert len(SkippingImageFolder(str(tmp_path / "train"))) == images


def test_a_walk_does_not_enter_a_link_to_the_folder_itself_or_above(tmp_path: Path) -> None:
    _image(tmp_path / "c" / "0.png")
    os.symlink(".", tmp_path / "c" / "self")
    os.symlink(tmp_path, tmp_path / "c" / "root")
    os.symlink(tmp_path / "c" / "missing.png", tmp_path / "c" / "dangling.png")
    walk = walk_images(tmp_path / "c")
    assert walk.images == [tmp_path / "c" / "0.png"]
    assert [link.name for link, _ in walk.loops] == ["root", "self"]
    assert walk.not_files == [tmp_path / "c" / "dangling.png"]


# --- repro data throughput: images by content ------------------------------------------------


def _throughput_folder(root: Path) -> None:
    for i in range(4):
        _image(root / f"{i}.jpg", 50 * i)
    _image(root / "png.jpg", fmt="PNG")  # a PNG named .jpg
    (root / "empty.jpg").write_bytes(b"")
    _truncated_jpeg(root / "cut.jpg")


@pytest.mark.faults
@pytest.mark.parametrize("workers", [0, 1])
def test_throughput_pipeline_skips_unreadable_images_counted_in_the_note(
    tmp_path: Path, workers: int, fault_record
) -> None:
    _throughput_folder(tmp_path)
    t0 = time.perf_counter()
    row = measure_decode(tmp_path, workers=workers, batch_size=7, input_size=8, batches=1)
    ok = row["images"] == 7 and "2 corrupt-image" in row["note"]
    fault_record("unreadable images in data throughput", ok, 0, 0, time.perf_counter() - t0)
    assert ok, row


def test_throughput_decode_jpeg_keeps_the_files_that_are_jpegs_by_content(tmp_path: Path) -> None:
    _throughput_folder(tmp_path)
    (tmp_path / "jpeg.png").write_bytes((tmp_path / "0.jpg").read_bytes())  # a JPEG named .png
    row = measure_decode(tmp_path, mode="decode_jpeg", batch_size=4, batches=2)
    assert row["images"] == 8 and row["images_per_s"] > 0
    assert "2 not-jpeg" in row["note"] and "1 corrupt-image" in row["note"]  # png, empty; cut


def test_throughput_without_a_single_readable_jpeg_is_a_named_error(tmp_path: Path) -> None:
    _image(tmp_path / "png.jpg", fmt="PNG")
    with pytest.raises(DataError, match="none of the 1 image files .* is a JPEG that decodes"):
        measure_decode(tmp_path, mode="decode_jpeg", batch_size=2, batches=1)


def test_throughput_cli_on_a_png_named_jpg_exits_0_and_writes_both_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _throughput_folder(tmp_path / "images")
    out = tmp_path / "tp.csv"
    argv = ["data", "throughput", "--root", str(tmp_path / "images"), "--out", str(out)]
    assert main([*argv, "--batch-size", "4", "--batches", "1", "--input-size", "8"]) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["mode"] for r in rows] == ["pipeline", "decode_jpeg"]
    assert "not-jpeg" in rows[1]["note"]


# --- repro bench: a batch beyond memory is refused before it is allocated ----------------------


def _lenet(mode: str = "infer") -> tuple[torch.nn.Module, BenchConfig]:
    spec = get_model_spec("lenet5")
    return spec.build(), BenchConfig("lenet5", mode=mode, device="cpu")


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_the_step_memory_estimate_grows_with_the_batch_and_covers_the_input(mode: str) -> None:
    model, config = _lenet(mode)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    estimate = memory.estimate_step_memory(
        model, get_model_spec("lenet5"), config, torch.device("cpu")
    )
    assert estimate is not None
    assert estimate.per_image >= 1 * 32 * 32 * 4  # at least the image itself, fp32
    assert estimate.at(1000) > estimate.at(10) > 0
    for k, v in model.state_dict().items():  # the probes leave weights and buffers as they were
        torch.testing.assert_close(v, before[k])


def test_a_batch_beyond_the_memory_available_is_refused_with_the_estimate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, config = _lenet()
    spec, cpu = get_model_spec("lenet5"), torch.device("cpu")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 50e6)
    with pytest.raises(ReproError) as info:
        memory.check_batch_fits(model, spec, config, cpu, 10**9)
    cause = info.value.cause
    assert cause.startswith("--batch-size 1000000000 would need at least ")
    assert "MB per image" in cause and "0.1 GB is available" in cause
    fit = int(info.value.fix.split("--batch-size ")[1].split()[0])
    assert fit >= 1
    memory.check_batch_fits(model, spec, config, cpu, fit)  # the batch it names passes


def test_bench_batch_size_one_billion_is_refused_before_any_step_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_measuring(*_: object) -> None:
        raise AssertionError("a step ran at the refused batch")

    monkeypatch.setattr("repro.bench.runner.run_with_oom_retry", no_measuring)
    with pytest.raises(ReproError, match=r"--batch-size 1000000000 .* GB is available"):
        benchmark(BenchConfig("lenet5", batch_size=10**9, device="cpu", mode="train"))


def test_bench_on_an_image_folder_with_unreadable_images_says_so_in_its_row(
    tmp_path: Path,
) -> None:
    _folder_with_unreadable_images(tmp_path)
    config = BenchConfig(
        "lenet5", batch_size=8, device="cpu", data_root=str(tmp_path), loader_workers=0,
        warmup=0, iters=2, repeats=1,
    )  # fmt: skip
    row = benchmark(config).row
    assert row["images_per_s"] > 0
    assert "2 unreadable image(s) of --data skipped" in row["note"]
