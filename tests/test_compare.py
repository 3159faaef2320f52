"""`repro compare` and `repro report --compare` (repro.report.compare, repro.report.cli)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from repro import tracking
from repro.cli import main
from repro.report.compare import (
    EXIT_REGRESSION,
    compare_bench,
    compare_results,
    moved_beyond_tolerance,
    verdict_change,
    with_unit,
)
from repro.verdicts import RESULT_COLUMNS, GroupOutcome, Result

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "benchmarks" / "results"


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
    assert [(a["claim_id"], b["verdict"]) for a, b in diff.of("worse")] == [("flips", "deviates")]
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
    assert main(["compare", str(a), str(b), "--html", str(html)]) == EXIT_REGRESSION
    captured = capsys.readouterr()
    out = captured.out
    assert "worse: 1; better: 0; verdict changed: 1; moved beyond tolerance: 1" in out
    assert (
        "row flips [vgg_d]: reproduced -> deviates (vgg / flips; measured 101 M -> 120 M, "
        "claimed 100 M ±2%)" in out
    )
    assert (
        "row drifts [vgg_d]: further from the claim (vgg / drifts; measured 150 M -> 180 M" in out
    )
    assert "only in A (1), paper / claim id:\n  vgg / gone" in out
    assert "only in B (1), paper / claim id:\n  vgg / new" in out
    assert "regression gate failed: 1 worse, 1 moved" in captured.err
    page = html.read_text()
    assert "<svg" in page and "compare-claims" in page
    # improvements and regressions apart: by colour and by a word
    assert "worse x1.19" in page and "further x1.2" in page
    assert "#c62828" in page.lower() or "c62828" in page.lower()
    # the gate is the caller's to choose
    assert main(["compare", str(a), str(b), "--fail-on", "none"]) == 0
    assert main(["compare", str(a), str(b), "--fail-on", "missing"]) == EXIT_REGRESSION
    assert main(["compare", str(b), str(b), "--fail-on", "worse,moved,dropped,missing"]) == 0
    assert main(["compare", str(a), str(b), "--fail-on", "worst"]) == 2
    assert "--fail-on 'worst': worst is no gate check" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("a", "b", "change"),
    [("reproduced", "deviates", "worse"), ("reproduced", "error", "worse"),
     ("measured", "error", "worse"), ("not-run", "error", "worse"),
     ("deviates", "reproduced", "better"), ("error", "deviates", "better"),
     ("reproduced", "not-run", "dropped"), ("not-run", "deviates", "new"),
     ("measured", "reproduced", "rejudged"), ("deviates", "deviates", None)],
)  # fmt: skip
def test_verdict_changes_are_ranked(a: str, b: str, change: str | None) -> None:
    assert verdict_change(a, b) == change


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [("8.29", "%", "8.29%"), ("6", "x", "6x"), ("138", "M", "138 M"), ("96x55x55", "shape",
     "96x55x55"), ("", "s", "-"), ("63", "count", "63"), ("0.32", "s", "0.32 s")],
)  # fmt: skip
def test_values_carry_their_units(value: str, unit: str, text: str) -> None:
    assert with_unit(value, unit) == text


def test_claims_match_across_hardware_and_speed_sits_side_by_side(tmp_path, capsys) -> None:
    """Another machine: every claim matched; an absolute time is not judged A against B; a
    speed ratio is judged by its verdict, as the speed suite judges it, not by how far it moved."""
    cpu, gpu = "cpu (AMD EPYC), fp32, torch 2.14.1", "cuda (NVIDIA H100), fp32, torch 2.14.1"
    time = dict(kind="speed", metric="time_per_image", unit="s", tolerance="±0.005")
    ratio = dict(kind="speed", metric="speedup", unit="x", tolerance="±20%")
    a = [claim("p", "100", "reproduced", hardware=cpu),
         claim("t", "5.3", "measured", **time, hardware=cpu),
         claim("r", "110", "reproduced", **ratio, hardware=cpu)]  # fmt: skip
    b = [claim("p", "100", "reproduced", hardware=gpu),
         claim("t", "0.05", "measured", **time, hardware=gpu),
         claim("r", "115", "reproduced", **ratio, hardware=gpu)]  # fmt: skip
    diff = compare_results(a, b)
    assert diff.same == 1 and not diff.moved and not diff.only_a and not diff.only_b
    assert [ra["claim_id"] for ra, _ in diff.side_by_side] == ["t", "r"]
    assert diff.hardware == {(cpu, gpu): 3}
    pa, pb = write(tmp_path / "a.csv", a), write(tmp_path / "b.csv", b)
    assert main(["compare", str(pa), str(pb)]) == 0
    out = capsys.readouterr().out
    assert f"hardware: other for 3 claim(s): A {cpu}; B {gpu}" in out
    assert "measured 5.3 s -> 0.05 s, claimed 100 s ±0.005; B / A x0.00943" in out
    b[2]["verdict"] = "deviates"  # the speed suite judged the ratio against the claim
    assert main(["compare", str(pa), str(write(tmp_path / "b.csv", b))]) == EXIT_REGRESSION
    assert "vgg / r; measured 110x -> 115x" in capsys.readouterr().out


def test_the_committed_results_against_themselves_with_one_verdict_worse(
    tmp_path: Path, capsys
) -> None:
    committed = ROOT / "reports" / "results.csv"
    with committed.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert main(["compare", str(committed), str(committed)]) == 0
    out = capsys.readouterr().out
    assert f"claims in both: {len(rows)}; worse: 0;" in out and "only in A: 0; only in B: 0" in out
    index = next(i for i, r in enumerate(rows) if r["verdict"] == "reproduced")
    worse = dict(rows[index], verdict="deviates")
    changed = write(tmp_path / "b.csv", [*rows[:index], worse, *rows[index + 1 :]])
    assert main(["compare", str(committed), str(changed)]) == EXIT_REGRESSION
    captured = capsys.readouterr()
    assert f"claims in both: {len(rows)}; worse: 1;" in captured.out
    assert f"({worse['paper']} / {worse['claim_id']}; measured" in captured.out
    assert "regression gate failed: 1 worse" in captured.err


def test_repro_compare_of_the_committed_bench_fixture_prints_ratios(capsys) -> None:
    """The committed pair: this machine's benchmark file, and one made with other settings."""
    other = sorted((FIXTURES / "compare").glob("bench_*.csv"))
    base = sorted(FIXTURES.glob("bench_*.csv"))
    assert other and base, "the committed benchmark files are missing"
    assert main(["compare", str(base[0]), str(other[0])]) == 0
    out = capsys.readouterr().out
    ratios = re.findall(r"->\s+[\d.e+]+ images/s\s+x(\d+\.\d+) (?:faster|slower)", out)
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
    assert main(["compare", f"mlflow:{first}", f"mlflow:{second}", *args]) == EXIT_REGRESSION
    assert "verdict changed: 1; moved beyond tolerance: 1" in capsys.readouterr().out
    # an experiment means its newest session: the same as comparing with `second`
    assert main(["compare", f"mlflow:{first}", "mlflow:repro/vgg", *args]) == EXIT_REGRESSION
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
