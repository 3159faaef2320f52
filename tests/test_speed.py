"""The speed suite: proposals, R-CNN's per-proposal CNN, Fast R-CNN's shared convolution, ratios
judged from one run, absolute times recorded against the paper's hardware, and `repro run
--suite speed` end to end. Every setting is shrunk (a few proposals, tiny images, one repeat)."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import mlflow
import pytest
import ray
import torch

from repro.claims import Claim, list_papers, load_paper, load_paper_file
from repro.cli import main
from repro.config import SpeedSettings, parse_settings
from repro.errors import ClaimFileError, ReproError
from repro.methods.fast_rcnn import FastRCNN, resize_factor
from repro.methods.rcnn.detector import RCNN, context_boxes
from repro.methods.region_proposals import (
    SelectiveSearch,
    fixed_proposals,
    selective_search_available,
)
from repro.runner import run_papers
from repro.runner.plan import plan_paper
from repro.runner.settings import RunSettings
from repro.runtime.timing import Timing
from repro.suites.speed.groups import SELECTIVE_SEARCH, check_pipelines, group_claims
from repro.suites.speed.scene import scene_tensor, synthetic_scene
from repro.suites.speed.suite import measure_speed_group
from repro.suites.speed.timed import Forward, known_pipeline
from repro.suites.speed.verdicts import same_hardware, speed_result

pytestmark = pytest.mark.timeout(240)

TINY = SpeedSettings(
    proposals=12,
    image_height=72,
    image_width=96,
    scale=64,
    max_size=100,
    rcnn_batch=5,
    warmup=0,
    repeats=1,
    min_repeat_s=0.001,
)
TINY_ENV = {
    "REPRO_SPEED_PROPOSALS": "12",
    "REPRO_SPEED_IMAGE_HEIGHT": "72",
    "REPRO_SPEED_IMAGE_WIDTH": "96",
    "REPRO_SPEED_SCALE": "64",
    "REPRO_SPEED_MAX_SIZE": "100",
    "REPRO_SPEED_RCNN_BATCH": "6",
    "REPRO_SPEED_WARMUP": "0",
    "REPRO_SPEED_REPEATS": "1",
    "REPRO_SPEED_MIN_REPEAT_S": "0.001",
}
SRC = {"seed": "test", "section": "generated"}


def claim(**kw: object) -> Claim:
    base: dict[str, object] = dict(
        table="T", row="r", unit="x", kind="speed", tolerance={"rel": 0.1}, source=SRC
    )
    return Claim.model_validate({**base, **kw})


def tiny_image() -> torch.Tensor:
    return scene_tensor(synthetic_scene(TINY.image_height, TINY.image_width, 0))


# ---- proposals and the scene -----------------------------------------------------------------


def test_fixed_proposals_are_deterministic_valid_boxes_inside_the_image() -> None:
    boxes = fixed_proposals(375, 500, 2000, seed=3)
    assert boxes.shape == (2000, 4)
    assert torch.equal(boxes, fixed_proposals(375, 500, 2000, seed=3))
    assert not torch.equal(boxes, fixed_proposals(375, 500, 2000, seed=4))
    x1, y1, x2, y2 = boxes.unbind(1)
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 500).all() and (y2 <= 375).all()
    assert ((x2 - x1) >= 8).all() and ((y2 - y1) >= 8).all()
    widths = x2 - x1
    assert widths.min() < 20 and widths.max() > 200  # multi-scale, not one size
    assert len(fixed_proposals(40, 50, 7)) == 7


def test_synthetic_scene_is_deterministic() -> None:
    a = synthetic_scene(30, 40, seed=1)
    assert a.shape == (30, 40, 3) and a.dtype.name == "uint8"
    assert (a == synthetic_scene(30, 40, seed=1)).all()
    assert a.std() > 20  # structure for selective search, not a flat image


@pytest.mark.skipif(not selective_search_available(), reason="opencv-contrib not installed")
def test_selective_search_proposes_boxes_inside_the_image() -> None:
    boxes = SelectiveSearch(synthetic_scene(60, 80, seed=0))()
    assert len(boxes) > 10
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 60).all()
    assert (boxes[:, 2] > boxes[:, 0]).all()


# ---- the detectors ---------------------------------------------------------------------------


def test_context_padding_leaves_16_pixels_around_the_warped_box() -> None:
    box = torch.tensor([[100.0, 50.0, 295.0, 245.0]])  # 195 x 195: 227 - 2 * 16
    padded = context_boxes(box, 227)
    assert torch.allclose(padded, torch.tensor([[84.0, 34.0, 311.0, 261.0]]))


def test_rcnn_runs_the_whole_cnn_once_per_proposal() -> None:
    boxes = fixed_proposals(TINY.image_height, TINY.image_width, 11)
    rcnn = RCNN("alexnet", tiny_image(), boxes, batch=4)
    seen: list[tuple[int, ...]] = []
    rcnn.cnn.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    fc7: list[tuple[int, ...]] = []
    rcnn.cnn.fc7.register_forward_hook(lambda m, a, out: fc7.append(tuple(out.shape)))
    kept_boxes, scores, labels = rcnn.step()
    assert sum(s[0] for s in seen) == 11 == rcnn.crops_per_step  # one crop per proposal
    assert all(s[1:] == (3, 227, 227) for s in seen) and len(seen) == math.ceil(11 / 4)
    assert sum(s[0] for s in fc7) == 11 and fc7[0][1] == 4096  # through the whole CNN
    assert len(kept_boxes) == len(scores) == len(labels) > 0
    assert int(labels.max()) < 20  # per-class NMS over the 20 object classes


def test_fast_rcnn_runs_the_conv_trunk_once_per_image() -> None:
    boxes = fixed_proposals(TINY.image_height, TINY.image_width, 12)
    fast = FastRCNN(tiny_image(), boxes, scale=64, max_size=100)
    trunk: list[tuple[int, ...]] = []
    fast.trunk.register_forward_pre_hook(lambda m, args: trunk.append(tuple(args[0].shape)))
    head: list[tuple[int, ...]] = []
    fast.head.register_forward_pre_hook(lambda m, args: head.append(tuple(args[0].shape)))
    fast.step()
    fast.step()
    factor = resize_factor(72, 96, 64, 100)
    assert trunk == [(1, 3, round(72 * factor), round(96 * factor))] * 2  # once per image
    assert head == [(12, 512, 7, 7)] * 2  # every RoI pooled from the one feature map


def test_faster_rcnn_forward_includes_its_rpn() -> None:
    p = Forward("faster_rcnn_zf", batch=1, image=tiny_image(), settings=TINY)
    assert p.model.transform.min_size == (64,) and p.model.transform.max_size == 100
    (out,) = p.step()
    assert set(out) == {"boxes", "scores", "labels"}


# ---- claims, groups and verdicts ---------------------------------------------------------------


def test_every_timed_claim_names_a_known_pipeline() -> None:
    timed = [c for k in list_papers() for c in load_paper(k).claims if c.timing]
    assert len(timed) >= 20
    for c in timed:
        assert known_pipeline(c.timing.pipeline), c.id  # type: ignore[union-attr]
        assert c.timing.relative_to is None or known_pipeline(c.timing.relative_to)  # type: ignore[union-attr]


def test_schema_rejects_inconsistent_timing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="relative_to"):
        claim(metric="speedup", value=2, timing={"pipeline": "yolov1"})
    with pytest.raises(ValueError, match="speed claims"):
        claim(metric="fps", unit="fps", value=2, kind="accuracy", dataset="voc2007",
              timing={"pipeline": "yolov1"})  # fmt: skip
    with pytest.raises(ValueError, match="not 'x'"):
        claim(metric="fps", value=2, timing={"pipeline": "yolov1"})
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "paper: bad\ntitle: t\nauthors: a\nyear: 2000\nclaims:\n"
        "  - {id: s, table: T, row: r, metric: fps, unit: fps, value: 45, kind: speed,\n"
        "     tolerance: {abs: 1}, source: {seed: s, section: s}, timing: {pipeline: yolo9}}\n"
    )
    paper = load_paper_file(bad)
    with pytest.raises(ReproError, match=r"entry claims\[0\] \(s\): unknown speed pipeline"):
        check_pipelines(paper.path, paper.claims)
    bad.write_text(bad.read_text().replace("metric: fps", "metric: speed"))
    with pytest.raises(ClaimFileError, match=r"claims\[0\] \(s\): .*not .speed."):
        load_paper_file(bad)


def test_speed_claims_stay_not_run_without_the_speed_suite() -> None:
    paper = load_paper("fast_rcnn")
    plan = plan_paper(paper, RunSettings())
    speed = [r for r in plan.not_run if r.kind == "speed"]
    assert len(speed) == 6 and not plan.of("speed")
    assert all("--suite speed" in r.note for r in speed)
    plan = plan_paper(paper, RunSettings(("speed",)))
    assert {c.id for c in plan.of("speed")} >= {"vgg16-test-time", "test-speedup"}
    reasons = {r.claim_id: r.note for r in plan.not_run if r.kind == "speed"}
    assert "training" in reasons["vgg16-training-time"] and not plan.of("analytic")


def test_claims_sharing_pipelines_are_grouped_across_papers() -> None:
    a = claim(metric="speedup", value=2, timing={"pipeline": "fast_yolo", "relative_to": "yolov1"})
    b = claim(metric="fps", unit="fps", value=45, timing={"pipeline": "yolov1"})
    c = claim(
        metric="speedup", value=2, timing={"pipeline": "yolov1", "relative_to": "rcnn_alexnet"}
    )
    d = claim(
        metric="time_ratio",
        value=2,
        timing={"pipeline": "lenet5", "relative_to": "alexnet", "batch": 4},
    )
    groups = group_claims([("p1", a), ("p2", b), ("p1", d), ("p2", c)], TINY)
    assert len(groups) == 2
    big = next(g for g in groups if len(g.claims) == 3)
    assert big.papers == ["p1", "p2"]
    assert big.pipelines == [("fast_yolo", 1), ("rcnn_alexnet", 1), ("yolov1", 1)]
    assert "alexnet_batch4" in next(g for g in groups if g is not big).key


def _timing(seconds: float, images: int = 1) -> Timing:
    return Timing(repeats=[[seconds]], items_per_iter=images)


def test_ratios_are_judged_and_absolute_times_recorded_against_the_paper_hardware() -> None:
    timings = {
        "rcnn_vgg16": _timing(30.0),
        "fast_rcnn_vgg16": _timing(0.25),
        SELECTIVE_SEARCH: _timing(1.0),
    }
    cpu = "cpu (Test CPU, 2 threads)"
    ratio = claim(
        metric="speedup",
        value=120,
        timing={"pipeline": "fast_rcnn_vgg16", "relative_to": "rcnn_vgg16"},
    )
    gmacs = {"rcnn_vgg16": 30932.5, "fast_rcnn_vgg16": 386.9}
    row = speed_result(ratio, "p", timings, {}, cpu, gmacs=gmacs)
    assert (row.verdict, float(row.measured)) == ("reproduced", 120.0)
    assert cpu in row.note and "rcnn_vgg16 30 s" in row.note
    assert "Multiply-adds per image" in row.note and "(ratio 79.9)" in row.note
    far = ratio.model_copy(update={"value": 146.0})
    row = speed_result(far, "p", timings, {}, cpu)
    assert row.verdict == "deviates" and "146" in row.note and "hardware" in row.note
    with_ss = claim(
        metric="speedup",
        value=25,
        timing={"pipeline": "fast_rcnn_vgg16", "relative_to": "rcnn_vgg16", "proposals": True},
    )
    assert float(speed_result(with_ss, "p", timings, {}, cpu).measured) == 24.8  # 31 / 1.25
    absolute = claim(
        metric="time_per_image",
        unit="s",
        value=0.32,
        hardware="Nvidia K40 GPU",
        tolerance={"abs": 0.005},
        timing={"pipeline": "fast_rcnn_vgg16"},
    )
    row = speed_result(absolute, "p", timings, {}, cpu)
    assert row.verdict == "measured" and float(row.measured) == 0.25
    assert "Nvidia K40 GPU" in row.note and cpu in row.note and "ratios" in row.note
    on_k40 = speed_result(absolute, "p", timings, {}, "cuda (Tesla K40c)")
    assert on_k40.verdict == "deviates"  # the paper's own GPU: judged
    fps = claim(metric="fps", unit="fps", value=4, timing={"pipeline": "fast_rcnn_vgg16"})
    assert float(speed_result(fps, "p", timings, {}, cpu).measured) == 4.0
    broken = speed_result(ratio, "p", timings, {"rcnn_vgg16": "timing failed"}, cpu)
    assert broken.verdict == "error" and broken.note == "timing failed"


def test_same_hardware_matches_only_the_papers_gpu() -> None:
    assert same_hardware("Nvidia K40 GPU", "cuda (Tesla K40c)")
    assert same_hardware("NVIDIA Titan X GPU", "cuda (NVIDIA GeForce GTX TITAN X)")
    assert not same_hardware("Nvidia K40 GPU", "cuda (NVIDIA H100 80GB HBM3)")
    assert not same_hardware("Nvidia K40 GPU", "cpu (K40 lookalike, 2 threads)")
    assert not same_hardware(None, "cuda (Tesla K40c)")


def test_one_run_times_both_pipelines_and_judges_their_ratio() -> None:
    fast = claim(
        metric="time_ratio", value=1000, timing={"pipeline": "alexnet", "relative_to": "lenet5"}
    )
    fps = claim(id="fps", metric="fps", unit="fps", value=100, timing={"pipeline": "lenet5"})
    (outcome,) = measure_speed_group(group_claims([("p", fast), ("p", fps)], TINY)[0])
    ratio_row, fps_row = outcome.results
    s = outcome.summary
    assert ratio_row.verdict in ("reproduced", "deviates") and fps_row.verdict == "measured"
    expected = s["alexnet.median_s"] / s["lenet5.median_s"]
    assert float(ratio_row.measured) == pytest.approx(expected, rel=1e-4)
    assert float(fps_row.measured) == pytest.approx(1 / s["lenet5.median_s"], rel=1e-4)
    assert "cpu (" in fps_row.note and outcome.kwargs["device"].startswith("cpu")
    ratio_of_macs = s["alexnet.gmacs_per_image"] / s["lenet5.gmacs_per_image"]
    assert ratio_of_macs > 100 and f"(ratio {ratio_of_macs:.3g})" in ratio_row.note


# ---- settings and the command ----------------------------------------------------------------


def test_settings_default_to_the_papers_values_and_take_env_then_params() -> None:
    default = parse_settings("", env={}).speed
    assert (default.proposals, default.image_width, default.image_height) == (2000, 500, 375)
    s = parse_settings(
        "speed: {proposals: 50, repeats: 2}", env={"REPRO_SPEED_PROPOSALS": "8"}
    ).speed
    assert (s.proposals, s.repeats) == (8, 2)
    with pytest.raises(ReproError, match="REPRO_SPEED_PROPOSALS: `speed.proposals` expects an"):
        parse_settings("", env={"REPRO_SPEED_PROPOSALS": "many"})
    with pytest.raises(ReproError, match="unknown key `speed.proposal`"):
        parse_settings("speed: {proposal: 5}", env={})
    with pytest.raises(ReproError, match="REPRO_SPEED_REPEATS: `speed.repeats` should be greater"):
        parse_settings("", env={"REPRO_SPEED_REPEATS": "0"})


def test_repro_run_fast_rcnn_speed_suite_writes_measured_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in TINY_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the environment alone shrinks the run
    code = main(["run", "fast_rcnn", "--suite", "speed", "--no-ray", "--no-mlflow", "--out", "m"])
    assert code == 0, capsys.readouterr().err
    with (tmp_path / "m" / "fast_rcnn.csv").open() as fh:
        rows = {r["claim_id"]: r for r in csv.DictReader(fh)}
    timed = [r for r in rows.values() if r["kind"] == "speed" and r["verdict"] != "not-run"]
    expected = 4 if selective_search_available() else 2
    assert len(timed) == expected
    for r in timed:
        assert r["measured"] and float(r["measured"]) > 0 and "cpu (" in r["note"]
    assert rows["vgg16-test-time"]["verdict"] == "measured"
    assert rows["test-speedup"]["verdict"] in ("reproduced", "deviates")
    assert rows["vgg16-training-time"]["verdict"] == "not-run"
    assert rows["vgg16-voc2007-map"]["verdict"] == "not-run"  # analytic/accuracy: not selected


TINY_SPEED_PAPER = """
paper: gamma
title: A tiny speed paper
authors: Test
year: 2020
claims:
  - {id: params, table: T1, row: net, metric: params, unit: K, value: 60,
     kind: analytic, tolerance: exact, source: {seed: test, section: generated}, model: lenet5}
  - {id: fps, table: T2, row: lenet, metric: fps, unit: fps, value: 1000, kind: speed,
     tolerance: {abs: 1}, source: {seed: test, section: generated}, hardware: "Nvidia K40 GPU",
     timing: {pipeline: lenet5}}
  - {id: ratio, table: T2, row: alexnet / lenet, metric: time_ratio, unit: x, value: 50,
     kind: speed, tolerance: {rel: 0.2}, source: {seed: test, section: generated},
     timing: {pipeline: alexnet, relative_to: conv5x5_6filters}}
"""


def test_speed_groups_run_through_ray_holding_every_cpu(tmp_path: Path) -> None:
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "gamma.yaml").write_text(TINY_SPEED_PAPER)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray.shutdown()
    try:
        settings = RunSettings(
            ("analytic", "speed"), out_dir=tmp_path / "m", papers_dir=papers, num_cpus=2,
            speed=TINY, tracking_uri=uri,
        )  # fmt: skip
        (run,) = run_papers(["gamma"], settings)
    finally:
        ray.shutdown()
    verdicts = {r.claim_id: r.verdict for r in run.results}
    assert verdicts["params"] == "reproduced" and verdicts["fps"] == "measured"
    assert verdicts["ratio"] in ("reproduced", "deviates")
    speed_groups = [g for g in run.groups if g.model == "speed"]
    assert len(speed_groups) == 2  # lenet5 alone; alexnet with conv5x5_6filters
    assert all(g.summary["torch_threads"] == 2 for g in speed_groups)  # the whole node each
    if os.geteuid() == 0:  # Ray's workers run at niceness 15; a timing runs at 0 where allowed
        assert all(g.summary["niceness"] == 0 for g in speed_groups)

    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("repro/gamma")
    runs = client.search_runs([exp.experiment_id])
    logged = {r.data.tags["model_key"]: r for r in runs if "model_key" in r.data.tags}
    lenet = logged["speed[lenet5]"]
    assert lenet.data.tags["claim.fps.verdict"] == "measured"
    assert lenet.data.metrics["lenet5.median_s"] > 0
    assert "claim.ratio.verdict" in logged["speed[alexnet, conv5x5_6filters]"].data.tags
