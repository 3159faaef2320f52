"""`repro data` sub-commands (exit codes, output, no tracebacks) and the throughput probe."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from repro.cli import main as run_cli
from repro.data.synth import write_image_folder, write_voc
from repro.data.throughput import ROW_KEYS, measure_decode
from repro.errors import ReproError


def test_synth_then_verify_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    assert run_cli(["data", "synth", "all", "--out", str(out), "--images", "4", "--seed", "1"]) == 0
    for kind in ("voc", "coco"):
        manifest = tmp_path / f"{kind}.json"
        code = run_cli(["data", "verify", kind, "--root", str(out / kind), "--quiet",
                        "--manifest", str(manifest)])  # fmt: skip
        assert code == 0, capsys.readouterr().out
        assert json.loads(manifest.read_text())["problems"] == {}
    code = run_cli(["data", "verify", "imagefolder", "--root", str(out / "imagefolder"),
                    "--quiet", "--manifest", str(tmp_path / "if.json")])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "ok: no problems found" in text and "train: images 12" in text


def test_verify_exit_codes_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    voc = write_voc(tmp_path / "voc", splits={"trainval": 4, "test": 2}, size=(48, 48))
    first = sorted((voc / "JPEGImages").glob("*.jpg"))[0]
    first.write_bytes(first.read_bytes()[:200])
    (voc / "ImageSets/Main/test.txt").unlink()
    manifest = tmp_path / "m.json"
    code = run_cli(["data", "verify", "voc2007", "--root", str(voc), "--quiet",
                    "--manifest", str(manifest)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert "corrupt-image: 1" in captured.out and first.name in captured.out
    assert "missing-split: 1" in captured.out and "Traceback" not in captured.out + captured.err
    assert json.loads(manifest.read_text())["problems"] == {"corrupt-image": 1, "missing-split": 1}
    code = run_cli(["data", "verify", "coco", "--root", str(tmp_path / "absent"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.startswith("error: dataset root")
    assert "Traceback" not in captured.err and "Fix:" in captured.err


def test_root_defaults_to_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    voc = write_voc(tmp_path / "voc", year="2012", splits={"trainval": 4}, size=(48, 48))
    monkeypatch.setenv("REPRO_DATA_VOC2012", str(voc))
    assert run_cli(["data", "stats", "voc2012"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["num_images"] == 4 and stats["num_classes"] == 3
    monkeypatch.delenv("REPRO_DATA_VOC2012")
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    assert run_cli(["data", "stats", "voc2012"]) == 2
    assert "REPRO_DATA_VOC2012" in capsys.readouterr().err


def test_measure_decode_rates(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, per_split={"train": 3}, size=40)
    for workers in (0, 1):
        row = measure_decode(root, workers=workers, batch_size=4, input_size=32, batches=2)
        assert list(row) == list(ROW_KEYS)
        assert row["mode"] == "pipeline" and row["images"] == 8 and row["images_per_s"] > 0
        assert row["images_per_s_per_core"] == pytest.approx(
            row["images_per_s"] / max(workers, 1), rel=0.01
        )
    row = measure_decode(root, mode="decode_jpeg", batch_size=4, batches=2)
    assert row["mode"] == "decode_jpeg" and row["images_per_s"] > 0 and row["images"] == 8


def test_cuda_decode_needs_a_gpu(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, per_split={"train": 2}, size=40)
    if torch.cuda.is_available():
        row = measure_decode(root, device="cuda", batch_size=4, batches=2)
        assert row["device"] == "cuda" and row["images_per_s"] > 0
    else:
        with pytest.raises(ReproError, match="no GPU"):
            measure_decode(root, device="cuda")


def test_throughput_cli_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_image_folder(tmp_path / "img", per_split={"train": 2}, size=40)
    out = tmp_path / "tp.csv"
    argv = ["data", "throughput", "--root", str(root), "--workers", "0", "--batch-size", "2",
            "--batches", "1", "--input-size", "32", "--out", str(out)]  # fmt: skip
    assert run_cli(argv) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["mode"] for r in rows] == ["pipeline", "decode_jpeg"]
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    assert run_cli(["data", "throughput", "--root", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
