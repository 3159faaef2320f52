"""The report in a real browser: headless Chromium lays out index.html; every chart renders,
the console stays empty, the screenshot is not blank. `make browser` runs these (and installs
Debian's chromium when absent); without Chromium they are skipped, saying how to install it."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from repro.cli import main
from repro.report import browser, write_report
from repro.verdicts import RESULT_COLUMNS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        browser.find_chromium() is None, reason="no Chromium: " + browser.INSTALL_HINT
    ),
]
REPO = Path(__file__).resolve().parents[1]


def result(paper: str, row: str, claimed: str, measured: str, verdict: str) -> dict:
    out = dict.fromkeys(RESULT_COLUMNS, "")
    out.update(paper=paper, table="Table 1", row=row, metric="params", unit="count",
               claimed=claimed, measured=measured, verdict=verdict, tolerance="±2%",
               note=f"note of {row}")  # fmt: skip
    return out


ROWS = [
    result("alexnet", "parameters", "60000000", "61100000", "reproduced"),
    result("alexnet", "GFLOPs", "0.72", "1.1", "deviates"),
    result("vgg", "top-1 error", "28.1", "", "not-run"),
    result("resnet", "parameters", "25500000", "25557032", "reproduced"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    bench = out / "bench"
    bench.mkdir()
    shutil.copy(next((REPO / "benchmarks" / "results").glob("bench_*.csv")), bench)
    write_report(ROWS, [], out, bench_dir=bench)
    return out / "index.html"


def test_every_chart_renders_with_a_size(report: Path) -> None:
    check = browser.check_page(report)
    assert {f"paper-{p}" for p in ("alexnet", "vgg", "resnet")} <= set(check.figures)
    assert {"summary", "bench-speed"} <= set(check.figures)
    assert check.unrendered() == []
    for name, (width, height, drawn) in check.figures.items():
        assert width > 200 and height > 40 and drawn > 5, name
    assert {"summary", "alexnet", "vgg", "resnet"} <= set(check.sections)


def test_the_console_stays_empty(report: Path) -> None:
    assert browser.check_page(report).console == []


def test_a_broken_page_is_caught(tmp_path: Path) -> None:
    """The checks can fail: a script error reaches the console; an empty figure is unrendered."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><figure id='chart-empty'><svg class='chart' width='0' height='0'></svg>"
        "</figure><script>notDefined();</script></body></html>"
    )
    check = browser.check_page(page)
    assert any("notDefined" in line for line in check.console)
    assert check.unrendered() == ["empty"]


def test_the_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = browser.screenshot(report, tmp_path / "shot.png", width=1000, height=2400)
    stats = browser.image_stats(shot)
    assert (stats.width, stats.height) == (1000, 2400)
    assert not stats.blank and stats.ink > 0.02 and stats.colours > 20
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    assert browser.image_stats(browser.screenshot(blank, tmp_path / "b.png", 400, 300)).blank


def test_repro_screenshot_checks_and_writes(report: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "screenshot.png"
    assert main(["screenshot", "--page", str(report), "--out", str(out), "--height", "1500"]) == 0
    printed = capsys.readouterr().out
    assert "charts rendered, 0 console message(s)" in printed and out.is_file()


def test_the_committed_report_renders(tmp_path: Path) -> None:
    """reports/index.html as `make reproduce` left it: a chart for every paper in it."""
    page = REPO / "reports" / "index.html"
    with (REPO / "reports" / "results.csv").open(newline="") as fh:
        papers = {r["paper"] for r in csv.DictReader(fh)}
    check = browser.check_page(page)
    assert {f"paper-{p}" for p in papers} <= set(check.figures)
    assert check.unrendered() == [] and check.console == []
