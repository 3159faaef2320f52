"""`repro compare` and `repro report --compare` (repro.report.compare, repro.report.cli)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from repro import tracking
from repro.cli import main
from repro.report.compare import compare_bench, compare_results, moved_beyond_tolerance
from repro.verdicts import RESULT_COLUMNS, GroupOutcome, Result

FIXTURES = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def claim(cid: str, measured: str, verdict: str, tolerance: str = "±2%", **extra: str) -> dict:
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(paper="vgg", claim_id=cid, table="Table 3", row=f"row {cid}", metric="params")
    row.update(claimed="100", measured=measured, verdict=verdict, tolerance=tolerance)
    row.update(model="vgg_d", unit="M")
    row.update(extra)
    return row


def write(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


A = [
    claim("same", "100.5", "reproduced"),
    claim("flips", "101", "reproduced"),
    claim("drifts", "150", "deviates"),
    claim("gone", "100", "reproduced"),
]
B = [
    claim("same", "100.9", "reproduced"),  # moved 0.4, within ±2% of 100.5
    claim("flips", "120", "deviates"),
    claim("drifts", "180", "deviates"),  # same verdict, moved 30 > 2% of 150
    claim("new", "", "not-run"),
]


def test_verdict_changes_and_moves_beyond_tolerance_are_found() -> None:
    diff = compare_results(A, B)
    assert [(a["claim_id"], b["verdict"]) for a, b in diff.changed] == [("flips", "deviates")]
    assert [a["claim_id"] for a, _ in diff.moved] == ["drifts"]
    assert diff.same == 1
    assert [r["claim_id"] for r in diff.only_a] == ["gone"]
    assert [r["claim_id"] for r in diff.only_b] == ["new"]


@pytest.mark.parametrize(
    ("a", "b", "tolerance", "moved"),
    [("10", "10.1", "±2%", False), ("10", "10.3", "±2%", True), ("10", "10.4", "±0.5", False),
     ("10", "11", "±0.5", True), ("7", "7", "exact", False), ("7", "8", "exact", True),
     ("7", "", "exact", False)],
)  # fmt: skip
def test_moved_uses_the_claims_tolerance(a: str, b: str, tolerance: str, moved: bool) -> None:
    assert moved_beyond_tolerance(claim("x", a, "deviates", tolerance),
                                  claim("x", b, "deviates", tolerance)) is moved  # fmt: skip


def bench(model: str, ips: str, status: str = "ok", **extra: str) -> dict:
    row = {"timestamp": "t", "status": status, "model": model, "mode": "infer",
           "device": "cpu (Test CPU, 2 cores)", "precision": "fp32", "batch_size": "32",
           "images_per_s": ips}  # fmt: skip
    row.update(extra)
    return row


def test_bench_ratio_is_b_over_a_and_names_what_differs() -> None:
    a = [bench("lenet5", "1000"), bench("alexnet", "40"), bench("alexnet", "50"),
         bench("vgg_d", "0", status="oom"), bench("resnet18", "20")]  # fmt: skip
    b = [bench("lenet5", "2000", batch_size="8"), bench("alexnet", "25"), bench("vgg_d", "3")]
    ratios, only_a, only_b = compare_bench(a, b)
    by_model = {r.model: r for r in ratios}
    assert by_model["lenet5"].ratio == pytest.approx(2.0)
    assert by_model["lenet5"].differs == "batch_size 32 -> 8"
    assert by_model["alexnet"].ratio == pytest.approx(0.5)  # the latest ok row of A (50)
    assert by_model["alexnet"].differs == ""
    assert only_a == ["resnet18 (infer)"] and only_b == ["vgg_d (infer)"]  # oom is no result


def test_repro_compare_prints_results_changes(tmp_path: Path, capsys) -> None:
    a, b = write(tmp_path / "a.csv", A), write(tmp_path / "b.csv", B)
    html = tmp_path / "cmp.html"
    assert main(["compare", str(a), str(b), "--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "verdict changed: 1; moved beyond tolerance: 1" in out
    assert "row flips [vgg_d]: reproduced -> deviates" in out
    assert "<svg" in html.read_text() and "compare-claims" in html.read_text()


def test_repro_compare_of_the_committed_bench_fixture_prints_ratios(capsys) -> None:
    """The committed pair: this machine's benchmark file, and one made with other settings."""
    other = sorted((FIXTURES / "compare").glob("bench_*.csv"))
    base = sorted(FIXTURES.glob("bench_*.csv"))
    assert other and base, "the committed benchmark files are missing"
    assert main(["compare", str(base[0]), str(other[0])]) == 0
    out = capsys.readouterr().out
    ratios = re.findall(r"->\s+[\d.e+]+\s+x(\d+\.\d+)", out)
    assert len(ratios) >= 3, out
    assert all(float(r) > 0 for r in ratios)
    assert "batch_size" in out  # the settings that differ are named


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "b.csv"], "no file or folder at missing.csv"),
        (["a.csv", "junk.csv"], "neither a results table nor a benchmark file"),
        (["a.csv", "bench.csv"], "cannot compare results"),
    ],
)
def test_bad_sides_are_named(tmp_path: Path, monkeypatch, capsys, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.csv", A)
    write(tmp_path / "bench.csv", [bench("lenet5", "1")])
    (tmp_path / "junk.csv").write_text("x,y\n1,2\n")
    assert main(["compare", *args]) == 2
    assert message in capsys.readouterr().err


def test_report_compare_adds_a_section(tmp_path: Path, capsys) -> None:
    measurements = tmp_path / "measurements"
    measurements.mkdir()
    write(measurements / "vgg.csv", B)
    old = write(tmp_path / "old.csv", A)
    out = tmp_path / "reports"
    args = ["report", "--measurements", str(measurements), "--out", str(out), "--no-mlflow"]
    assert main([*args, "--compare", str(old)]) == 0
    page = (out / "index.html").read_text()
    assert "id='comparison'" in page and "row flips [vgg_d]: reproduced -&gt; deviates" in page
    assert "## Comparison" in (out / "README.md").read_text()
    assert (out / "charts" / "compare-claims.svg").is_file()
    capsys.readouterr()


def test_mlflow_sessions_runs_and_experiments_are_sides(tmp_path: Path, capsys) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def group(rows: list[dict]) -> GroupOutcome:
        results = [Result(**dict.fromkeys(RESULT_COLUMNS, "") | {"seconds": 0.0} | r) for r in rows]
        return GroupOutcome("vgg_d", "vgg_d", {}, [3, 224, 224], {}, results, paper="vgg")

    first = tracking.log_paper(uri, "vgg", [group(A)], {"device": "cpu"})
    second = tracking.log_paper(uri, "vgg", [group(B)], {"device": "cpu"})
    args = ["--tracking-uri", uri]
    assert main(["compare", f"mlflow:{first}", f"mlflow:{second}", *args]) == 0
    assert "verdict changed: 1; moved beyond tolerance: 1" in capsys.readouterr().out
    # an experiment means its newest session: the same as comparing with `second`
    assert main(["compare", f"mlflow:{first}", "mlflow:repro/vgg", *args]) == 0
    assert "verdict changed: 1;" in capsys.readouterr().out

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("repro/vgg")
    runs = client.search_runs([exp.experiment_id], f"tags.`repro.session` = '{first}'")
    (parent,) = [r for r in runs if r.data.tags.get("repro.role") == "reproduction"]
    (run,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert main(["compare", f"mlflow:{run.info.run_id}", f"mlflow:{first}", *args]) == 0
    assert "verdict changed: 0; moved beyond tolerance: 0; unchanged: 4" in capsys.readouterr().out
    # the reproduction's parent run stands for its children
    assert main(["compare", f"mlflow:{parent.info.run_id}", f"mlflow:{first}", *args]) == 0
    assert "verdict changed: 0; moved beyond tolerance: 0; unchanged: 4" in capsys.readouterr().out
    assert main(["compare", "mlflow:nosuchthing", f"mlflow:{first}", *args]) == 2
    assert "no repro session, paper run or experiment named 'nosuchthing'" in (
        capsys.readouterr().err
    )
