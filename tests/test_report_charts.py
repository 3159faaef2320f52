"""The report's charts (repro.report.charts, repro.report.bench_charts): drawn with matplotlib
from tiny results, benchmark and training files the tests write, checked as SVG."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from repro.claims import Tolerance
from repro.report import log_report, write_report
from repro.report.bench_charts import bench_charts, read_benchmarks, training_charts, value_axis
from repro.report.charts import RATIO_LIMITS, claim_points, new_figure, to_svg
from repro.report.content import Content, build_charts
from repro.report.html_page import render_html
from repro.report.markdown import render_markdown
from repro.tracking.client import SPOOL_ENV
from repro.verdicts import RESULT_COLUMNS

SVG = "{http://www.w3.org/2000/svg}"


def result(paper: str, row: str, claimed: str, measured: str, verdict: str, **extra: str) -> dict:
    out = dict.fromkeys(RESULT_COLUMNS, "")
    out.update(paper=paper, table="Table 1", row=row, metric="params", unit="count")
    out.update(claimed=claimed, measured=measured, verdict=verdict, tolerance="±2%")
    out.update(extra)
    return out


ROWS = [
    result("alexnet", "AlexNet parameters", "60000000", "61100000", "reproduced"),
    result("alexnet", "AlexNet GFLOPs", "0.72", "1.1", "deviates", note="counted with biases"),
    result("alexnet", "conv1 output", "55x55x96", "55x55x96", "reproduced", metric="output_shape"),
    result("vgg", "VGG-16 top-1 error", "28.1", "", "not-run", note="no ImageNet here"),
    result("vgg", "VGG-16 parameters", "138000000", "138357544", "reproduced"),
    result("resnet", "far off", "1", "1e9", "deviates", tolerance="±0.5"),
]


def titles(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}title")]


def test_every_paper_gets_a_chart_with_a_tooltip_per_numeric_claim() -> None:
    charts = build_charts(ROWS, demos_dir=None, bench_dir=None)
    assert set(charts.papers) == {"alexnet", "vgg", "resnet"}
    alexnet = titles(charts.papers["alexnet"].svg)
    assert any("AlexNet GFLOPs" in t and "counted with biases" in t for t in alexnet)
    assert any("AlexNet parameters" in t for t in alexnet)
    assert not any("conv1 output" in t for t in alexnet)  # a shape has no ratio
    assert "1 shape claims" in charts.papers["alexnet"].caption
    assert {c.name for c in charts.overview} == {"summary", "deviations"}
    assert not charts.bench and not charts.training


def test_a_paper_without_numbers_still_gets_a_verdict_strip() -> None:
    rows = [result("yolo", "mAP", "63.4", "", "not-run", note="no VOC")]
    chart = build_charts(rows, None, None).papers["yolo"]
    assert any("mAP" in t and "no VOC" in t for t in titles(chart.svg))


def test_ratios_beyond_the_limits_are_drawn_at_the_edge_and_say_so() -> None:
    points, _ = claim_points(ROWS)
    far = next(p for p in points if p.label == "far off")
    assert far.ratio > RATIO_LIMITS[1]
    chart = build_charts(ROWS, None, None).papers["resnet"]
    assert "beyond" in chart.caption


def test_ids_are_unique_across_the_page_and_references_resolve() -> None:
    page = render_html(Content.of(ROWS, [], 1.0, None, None, build_charts(ROWS, None, None)))
    ids = re.findall(r'\bid="([^"]+)"', page) + re.findall(r"\bid='([^']+)'", page)
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})[:5]
    for ref in re.findall(r"url\(#([^)]+)\)", page):
        assert ref in ids


@pytest.mark.parametrize(
    "tolerance",
    [Tolerance(rel=0.02), Tolerance(abs=0.5), Tolerance(rel=0.1, abs=2), Tolerance()],
    ids=["rel", "abs", "both", "exact"],
)
def test_a_tolerance_reads_back_from_its_description(tolerance: Tolerance) -> None:
    assert Tolerance.from_description(tolerance.describe()) == tolerance


def test_the_band_is_the_wider_bound() -> None:
    assert Tolerance(rel=0.02, abs=5).band(100) == pytest.approx(0.05)
    assert Tolerance(rel=0.1, abs=5).band(100) == pytest.approx(0.1)
    assert Tolerance().band(3) == 0


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def bench_row(model: str, ips: float, energy: str = "", status: str = "ok") -> dict:
    return {
        "status": status, "model": model, "mode": "infer", "device": "cpu (Test CPU, 2 cores)",
        "precision": "fp32", "parallel": "none", "workers": "1", "images_per_s": str(ips),
        "latency_p50_ms": "10", "latency_p90_ms": "12", "latency_p99_ms": "15",
        "energy_j_per_image": energy,
    }  # fmt: skip


def test_benchmark_charts_come_from_the_files_and_say_what_is_missing(tmp_path: Path) -> None:
    write_csv(tmp_path / "bench_cpu.csv", [bench_row("lenet5", 900), bench_row("vgg16", 3),
                                          bench_row("alexnet", 0, status="oom")])  # fmt: skip
    write_csv(tmp_path / "scaling_cpu.csv", [
        {"model": "lenet5", "scaling": "weak", "workers": "1", "efficiency": "1.0"},
        {"model": "lenet5", "scaling": "weak", "workers": "2", "efficiency": "0.6"},
    ])  # fmt: skip
    (tmp_path / "bench_broken.csv").write_bytes(b"\xff\xfe\x00garbage")
    bench, scaling = read_benchmarks(tmp_path)
    assert [r["model"] for r in bench] == ["lenet5", "vgg16"]  # the oom row and the bad file out
    charts, missing = bench_charts(bench, scaling)
    names = [c.name for c in charts]
    assert names == ["bench-speed", "bench-latency", "bench-scaling"]
    assert len(missing) == 1 and missing[0].startswith("energy per image")
    speed = titles(charts[0].svg)
    assert any("900" in t for t in speed) and any(t.endswith(": 3") for t in speed)
    assert any("2 worker(s), efficiency 0.6" in t for t in titles(charts[2].svg))


def test_energy_is_charted_where_nvml_measured_it(tmp_path: Path) -> None:
    write_csv(tmp_path / "bench_gpu.csv", [bench_row("resnet50", 2000, energy="0.12")])
    charts, missing = bench_charts(*read_benchmarks(tmp_path))
    assert "bench-energy" in [c.name for c in charts]
    assert not any(line.startswith("energy") for line in missing)


@pytest.mark.parametrize(("values", "scale"), [([10, 12, 15], "linear"), ([3, 900], "log")])
def test_axes_are_log_only_over_a_wide_range(values: list[float], scale: str) -> None:
    _, (ax,) = new_figure(4, 2)
    ax.plot(values, range(len(values)))
    value_axis(ax, values, "ms")
    assert ax.get_xscale() == scale
    assert ("log scale" in ax.get_xlabel()) == (scale == "log")


def test_training_curves_from_the_demos_json(tmp_path: Path) -> None:
    history = [{"epoch": e, "loss": 1.0 / e, "top1_error": 50.0 - e} for e in range(1, 4)]
    digits = {"runs": [{"workers": 2, "result": {"seeds": [{"seed": 0, "history": history}]}}]}
    (tmp_path / "digits.json").write_text(json.dumps(digits))
    per_epoch = [{"epoch": 1, "voc07_map": 0.25}, {"epoch": 2, "voc07_map": 0.5}]
    detection = {"loss_per_epoch": [3.0, 2.0], "per_epoch": per_epoch}
    (tmp_path / "detection.json").write_text(json.dumps(detection))
    (tmp_path / "broken.json").write_text("{not json")
    charts = {c.name: c for c in training_charts(tmp_path)}
    assert set(charts) == {"training-digits", "training-detection"}
    tips = titles(charts["training-digits"].svg)
    assert any("top1_error 49 at epoch 1, 47 at 3" in t for t in tips)
    tips = titles(charts["training-detection"].svg)
    assert any("voc07_map 0.25 at epoch 1, 0.5 at 2" in t for t in tips)
    assert any("loss 3 at epoch 1, 2 at 2" in t for t in tips)


def test_svg_is_deterministic_for_the_same_data() -> None:
    def draw() -> str:
        fig, (ax,) = new_figure(3, 2)
        ax.plot([1, 2], [3, 4])
        return to_svg(fig, "same", {})

    assert draw() == draw()


def test_write_report_writes_every_chart_and_removes_stale_ones(tmp_path: Path) -> None:
    stale = tmp_path / "charts" / "paper-gone.svg"
    stale.parent.mkdir()
    stale.write_text("<svg/>")
    paths = write_report(ROWS, [], tmp_path, bench_dir=None)
    svgs = sorted(p.name for p in paths["charts"].glob("*.svg"))
    assert "paper-gone.svg" not in svgs
    assert {"paper-alexnet.svg", "paper-vgg.svg", "summary.svg", "deviations.svg"} <= set(svgs)
    markdown = paths["markdown"].read_text()
    for link in re.findall(r"\]\((charts/[^)]+)\)", markdown):
        assert (tmp_path / link).is_file(), link
    page = paths["html"].read_text()
    assert page.count("<svg") == len(svgs)
    remote = r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|@import|url\(\s*["']?https?:"""
    fetched = re.findall(remote, page)
    assert not fetched  # self-contained: nothing loaded from the network


def test_markdown_and_html_show_the_same_charts() -> None:
    charts = build_charts(ROWS, None, None)
    content = Content.of(ROWS, [], 1.0, None, None, charts)
    markdown, page = render_markdown(content), render_html(content)
    for chart in charts.all():
        assert f"charts/{chart.name}.svg" in markdown
        assert f"id='chart-{chart.name}'" in page


def test_the_report_and_its_charts_are_logged_to_mlflow(tmp_path: Path) -> None:
    paths = write_report(ROWS, [], tmp_path / "reports", bench_dir=None)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged, line = log_report(paths, uri)
    assert logged, line
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("repro/report").experiment_id])
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.csv", "README.md", "index.html", "charts"} <= top
    charts = {a.path for a in client.list_artifacts(run.info.run_id, "charts")}
    assert "charts/paper-alexnet.svg" in charts
    assert run.data.tags["charts"] == str(len(list(paths["charts"].glob("*.svg"))))


def test_a_store_that_is_down_costs_a_warning_not_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    paths = write_report(ROWS, [], tmp_path, bench_dir=None)
    logged, line = log_report(paths, "http://127.0.0.1:9")
    assert not logged and "the report is written" in line and "127.0.0.1:9" in line
    assert paths["html"].is_file()
    assert len(list((tmp_path / "spool").glob("*.json"))) == 1  # kept for `repro sync`
