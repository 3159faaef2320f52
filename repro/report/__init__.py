"""Render the report: reports/results.csv, reports/README.md, a self-contained index.html (its
charts inline SVG) and the same charts as SVG files in reports/charts/ for the Markdown view.

Input is the flat results table (from the measurement files or from MLflow) and, where present,
the per-paper metadata the measure stage wrote (timings, environment), the demonstrations'
results and the benchmark files (benchmarks/results/*.csv).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro.environment import process_seconds
from repro.errors import ReproError
from repro.files import atomic_write_text, inside, remove_leftovers, unwritable
from repro.report.compare import Comparison
from repro.report.content import BENCHMARKS_DIR, Content, build_charts
from repro.report.hardware import ACCURACY_DIR, SPEED_DIR, fold_runs, read_runs
from repro.report.html_page import render_html
from repro.report.markdown import CHARTS_DIR, render_markdown
from repro.report.rows import row_problem
from repro.verdicts import RESULT_COLUMNS, write_results_csv


def write_report(
    rows: Sequence[dict[str, Any]],
    metas: Sequence[dict[str, Any]],
    out_dir: Path,
    demos: dict[str, list[dict[str, str]]] | None = None,
    demo_times: dict[str, float] | None = None,
    demos_dir: Path | None = None,
    bench_dir: Path | None = BENCHMARKS_DIR,
    comparison: Comparison | None = None,
    speed_dir: Path | None = SPEED_DIR,
    accuracy_dir: Path | None = ACCURACY_DIR,
    skipped: Sequence[str] = (),
) -> dict[str, Path]:
    """``demos``: the demonstrations' tables (:func:`read_demos`), shown in their own section;
    ``demo_times``: their stages' wall times (:func:`demo_seconds`); ``demos_dir``: where their
    JSON files (training curves) are; ``bench_dir``: the benchmark files to chart (None: none);
    ``comparison``: a section comparing these results with others (`repro report --compare`);
    ``speed_dir``, ``accuracy_dir``: the committed speed and accuracy results per hardware to
    fold in (None: none); ``skipped``: what reading the results left out (``where: why``,
    :class:`repro.report.content.Measurements`), listed in the report. Every path written is
    checked to stay inside ``out_dir``; a row whose paper is not a paper key is refused."""
    out_dir = Path(out_dir)
    for i, row in enumerate(rows, 1):
        problem = row_problem(row, ("paper", "table", "row", "verdict"))
        if problem:
            raise ReproError(
                f"result row {i} cannot be reported: {problem}.",
                "read results with repro.report.content.read_measurements (or "
                "repro.report.rows.checked_rows), which leave such rows out and name them; the "
                f"columns are {', '.join(RESULT_COLUMNS)}.",
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(out_dir, exc) from None
    runs = read_runs(speed_dir, "speed")
    trained = read_runs(accuracy_dir, "accuracy")
    rows = fold_runs(rows, metas, [*runs, *trained]) if rows else []
    rows = sorted(rows, key=lambda r: r["paper"])  # stable: keeps each paper's claim order
    elapsed = process_seconds()  # this process so far: the report stage's wall time
    paths = {
        "csv": inside(out_dir, "results.csv"),
        "markdown": inside(out_dir, "README.md"),
        "html": inside(out_dir, "index.html"),
        "charts": inside(out_dir, CHARTS_DIR),
    }
    charts = build_charts(rows, demos_dir, bench_dir, trained)
    charts.comparison = comparison
    svgs = {inside(paths["charts"], f"{chart.name}.svg"): chart.svg for chart in charts.all()}
    write_results_csv(paths["csv"], rows)
    try:
        paths["charts"].mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(paths["charts"], exc) from None
    for folder in (out_dir, paths["charts"]):
        remove_leftovers(folder)
    for svg, text in svgs.items():
        atomic_write_text(svg, '<?xml version="1.0" encoding="utf-8"?>\n' + text + "\n")
    for old in paths["charts"].glob("*.svg"):  # charts no longer drawn
        if old not in svgs:
            old.unlink()
    content = Content.of(rows, metas, elapsed, demos, demo_times, charts, runs, skipped)
    atomic_write_text(paths["markdown"], render_markdown(content))
    atomic_write_text(paths["html"], render_html(content))
    return paths


def log_report(paths: dict[str, Path], uri: str) -> tuple[bool, str]:
    """Log the written report to MLflow (experiment "repro/report": the files and the charts as
    artifacts). Never raises for the store: the report is on disk already, so a store that is
    down or fails is met as everywhere (repro.tracking.spool): the report's logging (the paths
    of its files) is spooled for `repro sync`, and the user is warned once. A tracking URI that
    cannot work (a file store) is not spooled. Returns (logged, a line saying so; when not
    logged, the warning has said it)."""
    from repro.tracking import check_tracking_uri, new_session, reachable  # off `repro --help`
    from repro.tracking.client import first_line, log, save_entry, warn_once
    from repro.tracking.report import log_report as log_report_run

    tags = {"charts": str(len(list(Path(paths["charts"]).glob("*.svg"))))}
    key = new_session()
    if not reachable(uri):
        reason = f"{uri} does not answer"
    else:
        try:
            check_tracking_uri(uri)
        except ReproError as exc:  # a store that cannot work: nothing to replay later
            line = f"the report is written; it is not logged to MLflow: {exc}"
            log.warning("%s", line)
            return False, line
        try:
            run_id = log_report_run(uri, paths, tags, key)
        except Exception as exc:  # noqa: BLE001 - any store failure: spooled, not raised
            reason = first_line(exc)
        else:
            return True, (
                f"logged the report to MLflow at {uri} (experiment repro/report, run {run_id})"
            )
    files = {name: str(Path(path).resolve()) for name, path in paths.items()}
    save_entry("report", uri, reason, {"files": files, "tags": tags, "key": key}, f"report-{key}")
    return False, warn_once(uri, "MLflow report run", reason, "the report is written")
