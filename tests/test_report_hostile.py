"""The report, `repro compare` and `repro papers` against hostile or damaged input (issue 27):
a paper field that is a path, results cut off mid-row, empty or not UTF-8, claim text carrying
HTML or terminal escape codes, leftovers of a report killed mid-write. Each gives a named error
or a counted, named skip; nothing is written outside the output folder; no traceback."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from repro.cli import main
from repro.errors import ReproError
from repro.files import inside, printable, remove_leftovers
from repro.report import cli as report_cli
from repro.report import write_report
from repro.report.bench_charts import committed_curve_charts
from repro.report.content import read_measurements
from repro.report.rows import checked_rows, paper_key_problem, read_csv
from repro.verdicts import RESULT_COLUMNS

pytestmark = pytest.mark.faults  # `make faults` records them in benchmarks/results/faults.csv
PAPERS = Path(__file__).resolve().parents[1] / "repro" / "papers"
ESCAPE = "\x1b[31mred\x1b]0;title\x07"
NO_BENCH = {"bench_dir": None, "speed_dir": None, "accuracy_dir": None}


def result(paper: str = "lenet", claim: str = "params", **extra: str) -> dict[str, str]:
    out = dict.fromkeys(RESULT_COLUMNS, "")
    out.update(paper=paper, claim_id=claim, table="Table 1", row=f"{claim} row", metric="params")
    out.update(unit="count", claimed="60000", measured="61000", verdict="reproduced")
    out.update(tolerance="±2%", kind="analytic", model="lenet5")
    out.update(extra)
    return out


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    """`repro report` of tmp_path/m into tmp_path/out, with no benchmark or committed runs
    (the working directory holds none) and no MLflow."""
    monkeypatch.chdir(tmp_path)
    return main(["report", "--measurements", "m", "--out", "out", "--no-mlflow", *extra])


def files_named(root: Path, word: str) -> list[Path]:
    return [p for p in root.rglob("*") if word in p.name]


# --- One paper key, every path inside its folder ---------------------------------------------


@pytest.mark.parametrize("key", ["lenet", "fast_rcnn", "yolo_v2", "inception-v4", "zfnet2"])
def test_the_papers_keys_are_paper_keys(key: str) -> None:
    assert paper_key_problem(key) is None


@pytest.mark.parametrize(
    "key", ["x/../../tmp/PWNED", "../vgg", "/etc/passwd", "VGG", "a b", "", "a__b", "-a", None, 3]
)
def test_a_path_or_odd_text_is_no_paper_key(key: object) -> None:
    assert "is not lowercase letters and digits" in (paper_key_problem(key) or "")


def test_inside_refuses_names_that_leave_the_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "out", "a.svg") == tmp_path / "out" / "a.svg"
    for name in ("../a.svg", "x/../../a.svg", "/tmp/a.svg", "link/a.svg", "."):
        with pytest.raises(ReproError, match="leads out of"):
            inside(tmp_path / "out", name)


def test_a_csv_row_whose_paper_is_a_path_writes_nothing_outside(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    fault_record,
) -> None:
    deep = tmp_path / "a" / "b"
    write_rows(deep / "m" / "lenet.csv", [result(), result("x/../../../PWNED", "evil")])
    code = report(deep, monkeypatch)
    outside = files_named(tmp_path, "PWNED")
    kept = "## lenet" in (deep / "out" / "README.md").read_text()
    fault_record("report input: a paper field that is a path (x/../../../PWNED)",
                 code == 0 and not outside and kept, 0 if kept else 1, 0, 0.0)  # fmt: skip
    assert code == 0 and outside == []
    captured = capsys.readouterr()
    assert "m/lenet.csv, line 3: paper key 'x/../../../PWNED' is not lowercase" in caplog.text
    assert "INCOMPLETE: 1 file(s) or row(s)" in captured.out
    readme = (deep / "out" / "README.md").read_text()
    assert "m/lenet.csv, line 3" in readme and "## lenet" in readme
    assert sorted(p.name for p in (deep / "out" / "charts").iterdir()) == [
        "paper-lenet.svg",
        "summary.svg",
    ]


def test_write_report_refuses_a_row_whose_paper_is_a_path(tmp_path: Path) -> None:
    with pytest.raises(ReproError, match=r"result row 2 cannot be reported: paper key '\.\./x'"):
        write_report([result(), result("../x")], [], tmp_path / "out", **NO_BENCH)
    assert not (tmp_path / "out").exists()


def test_mlflow_rows_whose_paper_is_a_path_are_skipped(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`repro report --from mlflow` and `repro compare mlflow:KEY`: a results.json row of a
    run is as hostile as a CSV row."""
    rows = [result(), result("x/../../PWNED", "evil"), ["not", "a", "row"]]
    monkeypatch.setattr(report_cli.tracking, "check_tracking_uri", lambda uri: None)
    monkeypatch.setattr(report_cli.tracking, "load_results", lambda uri, papers=None: rows)
    monkeypatch.setattr(report_cli, "load_results_of", lambda uri, key: rows)
    uri = ["--tracking-uri", "sqlite:///unused.db"]
    (tmp_path / "w").mkdir()
    assert report(tmp_path / "w", monkeypatch, "--from", "mlflow", *uri) == 0
    assert files_named(tmp_path, "PWNED") == []
    captured = capsys.readouterr()
    assert "row 2 (evil): paper key 'x/../../PWNED' is not lowercase" in caplog.text
    assert "row 3: the row is list, not a table row" in caplog.text
    assert "INCOMPLETE: 2 file(s) or row(s)" in captured.out

    assert main(["compare", "mlflow:s1", "mlflow:s2", *uri]) == 0
    out = capsys.readouterr().out
    assert "claims in both: 1;" in out and "only in B: 0" in out
    assert "left out of B: MLflow at sqlite:///unused.db, s2, row 2 (evil)" in out


def test_committed_curves_of_a_file_named_as_no_paper_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    curve = "recipe,seed,epoch,loss,top1_error\nr,0,1,2.0,50\nr,0,2,1.0,40\n"
    (folder / "lenet.curve.csv").write_text(curve)
    (folder / "Bad Name.curve.csv").write_text(curve)
    assert list(committed_curve_charts([(str(folder), "cpu")])) == ["lenet"]


# --- Escaping ----------------------------------------------------------------------------------

HOSTILE = {
    "row": "<script>alert(1)</script> a | b\nsecond line",
    "note": '<img src=x onerror="alert(2)"> &lt;b&gt; ' + ESCAPE,
    "table": "Table <iframe src=//evil>",
    "verdict": "reproduced' onmouseover='alert(3)",
}


def test_markdown_carries_no_raw_html_and_keeps_its_table(tmp_path: Path) -> None:
    paths = write_report([result(**HOSTILE), result(claim="b")], [], tmp_path, **NO_BENCH)
    readme = paths["markdown"].read_text()
    for raw in ("<script", "<img", "<iframe", "\x1b", "\x07", "&lt;b&gt;"):
        assert raw not in readme
    assert "&lt;script>alert(1)&lt;/script> a \\| b second line" in readme
    assert "&amp;lt;b&amp;gt; \\\\x1b[31mred" in readme  # the backslash escaped, shown once
    assert "### Table &lt;iframe src=//evil>" in readme
    rows = [line for line in readme.splitlines() if "alert(1)" in line]
    assert len(rows) == 1  # one table row: no line break, no cell split by the `|`
    header = next(line for line in readme.splitlines() if line.startswith("| row |"))
    unescaped = lambda line: line.replace("\\|", "").count("|")  # noqa: E731
    assert unescaped(rows[0]) == unescaped(header)


def test_html_escapes_a_verdict_in_a_class_attribute(tmp_path: Path) -> None:
    page = write_report([result(**HOSTILE)], [], tmp_path, **NO_BENCH)["html"].read_text()
    assert "<td class='reproduced' onmouseover" not in page and "<script>alert" not in page
    assert "class='reproduced&#x27; onmouseover=&#x27;alert(3)'" in page


def test_charts_of_claims_with_control_characters_or_tex_are_valid_svg(tmp_path: Path) -> None:
    rows = [
        result(**{**HOSTILE, "verdict": "deviates"}),
        result(claim="b", row=ESCAPE),
        result(claim="c", row="cost $\\frac{ $ here", measured="90000", verdict="deviates"),
    ]
    paths = write_report(rows, [], tmp_path, **NO_BENCH)
    charts = sorted(Path(paths["charts"]).glob("*.svg"))
    assert charts
    for chart in charts:
        text = chart.read_text()
        assert "\x1b" not in text
        ET.fromstring(text.split("\n", 1)[1])  # well-formed XML, as a browser demands
    assert "cost $\\frac{ $ here" in (Path(paths["charts"]) / "paper-lenet.svg").read_text()


def test_printable_shows_control_characters_instead_of_acting_on_them() -> None:
    assert printable(f"a{ESCAPE}\u202eb\tc") == "a\\x1b[31mred\\x1b]0;title\\x07\\u202eb\\tc"
    assert printable("Q&A, 32x32 -> 28x28, ±2%") == "Q&A, 32x32 -> 28x28, ±2%"


def test_repro_papers_claims_neutralises_escape_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (PAPERS / "fcn.yaml").read_text()
    text = text.replace('row: "224x224x3', 'row: "\\e[2J\\e[31m224x224x3', 1)
    text = text.replace("title: Fully", 'title: "\\e]0;pwned\\aFully', 1).replace(
        "Segmentation\nauthors", 'Segmentation"\nauthors', 1
    )
    (tmp_path / "fcn.yaml").write_text(text)
    assert main(["papers", "fcn", "--claims", "--papers-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "encoder-output: \\x1b[2J\\x1b[31m224x224x3 image" in out
    assert "fcn: \\x1b]0;pwned\\x07Fully Convolutional" in out


def test_compare_output_neutralises_escape_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_rows(tmp_path / "a.csv", [result(row=ESCAPE, verdict="reproduced")])
    b = write_rows(tmp_path / "b.csv", [result(row=ESCAPE, verdict="deviates")])
    assert main(["compare", str(a), str(b), "--fail-on", "none"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "lenet: \\x1b[31mred" in out


# --- Words instead of silence and tracebacks ---------------------------------------------------


def test_a_zero_byte_measurement_file_is_named_and_the_report_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_rows(tmp_path / "m" / "lenet.csv", [result()])
    (tmp_path / "m" / "vgg.csv").write_bytes(b"")
    assert report(tmp_path, monkeypatch) == 0
    captured = capsys.readouterr()
    assert "m/vgg.csv: the file is empty" in caplog.text
    assert "; INCOMPLETE: 1 file(s) or row(s) of the results left out" in captured.out
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Left out of this report" in readme and "m/vgg.csv: the file is empty" in readme
    assert "Left out of this report" in (tmp_path / "out" / "index.html").read_text()


@pytest.mark.parametrize(
    ("damage", "named", "intact"),
    [
        (lambda text: text[: text.index("\n", text.index("\n") + 1) + 30], "line 3: the row has",
         "a"),
        (lambda text: text.rstrip("\r\n")[:-2], "line 4: the file ends in the middle of this row",
         "ab"),
        (lambda text: text[: text.rindex('"') - 3], "line 4: not CSV from here on", "ab"),
        (lambda text: text.replace("b row", "b \udcff row"), "line 3: not UTF-8 text", "ac"),
        (lambda text: text.replace("paper", "pa\0per", 1), "the header lacks the column(s) paper",
         ""),
    ],
    ids=["cut-mid-row", "cut-in-last-field", "cut-in-quotes", "not-utf8", "nul-in-header"],
)  # fmt: skip
def test_a_damaged_measurement_file_is_a_named_skip(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage,
    named: str,
    intact: str,
    caplog: pytest.LogCaptureFixture,
    fault_record,
) -> None:
    """Every row the damage left whole is reported, and the other papers; the damage named."""
    last = result(claim="c", note='quoted, "cut"', hardware="cpu box")
    rows = [result(claim="a"), result(claim="b"), last]
    text = write_rows(tmp_path / "full.csv", rows).read_bytes().decode("utf-8")
    damaged = damage(text).encode("utf-8", "surrogateescape")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "lenet.csv").write_bytes(damaged)
    write_rows(tmp_path / "m" / "vgg.csv", [result("vgg")])
    code = report(tmp_path, monkeypatch)
    readme = (tmp_path / "out" / "README.md").read_text()
    kept = sum(f"| {c} row |" in readme for c in intact) + ("## vgg" in readme)
    shown = sum(f"| {c} row |" in readme for c in "abc")
    fault_record("report input: a measurement CSV cut, not UTF-8 or not CSV",
                 code == 0 and kept == len(intact) + 1 and shown == len(intact),
                 len(intact) + 1 - kept, 0, 0.0)  # fmt: skip
    assert code == 0 and kept == len(intact) + 1 and shown == len(intact)
    assert "Traceback" not in capsys.readouterr().err
    logged = caplog.text
    assert f"m/lenet.csv, {named}" in logged or f"m/lenet.csv: {named}" in logged, logged


def test_rows_read_before_a_cut_are_kept(tmp_path: Path) -> None:
    rows = [result(claim=c, hardware="cpu box") for c in "abc"]
    text = write_rows(tmp_path / "r.csv", rows).read_bytes().decode("utf-8")
    (tmp_path / "r.csv").write_bytes(text[:-4].encode())  # "cpu box\r\n" cut to "cpu b"
    read, header = read_csv(tmp_path / "r.csv", ["paper", "claim_id"])
    assert [r["claim_id"] for r in read.rows] == ["a", "b"]
    assert read.skipped == [f"{tmp_path / 'r.csv'}, line 4: the file ends in the middle of this row"
                            " (a write cut off)"]  # fmt: skip
    assert header == RESULT_COLUMNS


@pytest.mark.parametrize("value", [".nan", "nan", ".inf", "-inf", "inf", "1e999", "NaN"])
def test_nan_and_inf_values_are_shown_as_text(tmp_path: Path, value: str) -> None:
    rows = [
        result(claimed=value, measured="1", verdict="deviates"),
        result(claim="m", claimed="1", measured=value, verdict="deviates", kind="speed"),
        result(claim="t", tolerance=value),
    ]
    paths = write_report(rows, [], tmp_path, **NO_BENCH)
    assert f"| {value} |" in paths["markdown"].read_text()


def test_compare_names_the_row_a_truncated_results_csv_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_record
) -> None:
    rows = [result(claim=c) for c in "abcd"]
    a = write_rows(tmp_path / "a.csv", rows)
    text = a.read_bytes().decode("utf-8")
    cut = tmp_path / "b.csv"
    cut.write_bytes(text[: text.rindex("lenet") + 12].encode())
    code = main(["compare", str(a), str(cut)])
    out = capsys.readouterr().out
    both = int(re.search(r"claims in both: (\d+);", out).group(1))
    fault_record("compare: a results.csv cut mid-row", code == 0 and "only in B: 0" in out,
                 3 - both, int(re.search(r"only in B: (\d+)", out).group(1)), 0.0)  # fmt: skip
    assert "claims in both: 3;" in out and "only in B: 0" in out  # the cut row is no claim
    assert re.search(
        f"left out of B: {re.escape(str(cut))}, line 5: the row has 1?[0-9] fields "
        "where the header has 18",
        out,
    )


def test_compare_of_an_empty_or_binary_file_is_a_named_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_rows(tmp_path / "a.csv", [result()])
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert main(["compare", str(a), str(tmp_path / "empty.csv")]) == 2
    assert "cannot compare" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "binary.csv")]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


def test_broken_metadata_is_skipped_and_the_rows_kept(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = tmp_path / "m"
    write_rows(m / "lenet.csv", [result()])
    write_rows(m / "vgg.csv", [result("vgg")])
    write_rows(m / "alexnet.csv", [result("alexnet")])
    (m / "lenet.json").write_text('{"paper": "lenet", "process_sec')  # cut mid-write
    (m / "vgg.json").write_text('["not", "an", "object"]')
    (m / "alexnet.json").write_text(json.dumps({"paper": "alexnet", "process_seconds": "x"}))
    read = read_measurements(m)
    assert len(read.rows) == 3 and [meta["paper"] for meta in read.metas] == ["alexnet"]
    assert len(read.skipped) == 2
    assert report(tmp_path, monkeypatch) == 0
    assert "measure@alexnet | 0.0 s" in (tmp_path / "out" / "README.md").read_text()
    assert "m/vgg.json: not a JSON object" in caplog.text


def test_leftovers_of_a_report_killed_mid_write_are_removed(tmp_path: Path, fault_record) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(gone.stdout)
    charts = tmp_path / "charts"
    charts.mkdir()
    leftovers = [tmp_path / f".README.md.{dead}.tmp", charts / f".summary.svg.{dead}.tmp"]
    for path in leftovers:
        path.write_text("<half")
    alive = charts / f".summary.svg.{os.getppid()}.tmp"  # a writer still running: kept
    alive.write_text("<half")
    paths = write_report([result()], [], tmp_path, **NO_BENCH)
    cleaned = not any(p.exists() for p in leftovers) and alive.exists()
    fault_record("report killed mid-write: its temporary files at the next run", cleaned, 0, 0, 0.0)
    assert cleaned
    assert paths["markdown"].read_text().startswith("# Reproduction report")
    assert remove_leftovers(charts) == []


def test_checked_rows_keeps_good_rows_in_order() -> None:
    read = checked_rows([result(claim="a"), {"paper": "vgg"}, result(claim="b")], "here")
    assert [r["claim_id"] for r in read.rows] == ["a", "b"]
    assert read.skipped[0].startswith("here, row 2: the row lacks the column(s) claim_id")
