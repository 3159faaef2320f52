"""`repro compare` and `repro screenshot`: the report-side commands beside `repro report`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repro import config, tracking
from repro.errors import ReproError
from repro.files import atomic_write_text
from repro.report.compare import (
    DEFAULT_GATE,
    EXIT_REGRESSION,
    GATE_CHECKS,
    Comparison,
    Table,
    compare,
    read_table,
)
from repro.report.content import BENCHMARKS_DIR
from repro.report.html_page import comparison_page
from repro.report.rows import RowsRead, checked_rows
from repro.tracking.report import load_results_of

COMPARE_EPILOG = (
    """A and B are each one of:
  reports/results.csv                    a results table (or a measurement folder)
  benchmarks/results/bench_<env>.csv     a benchmark file (another machine's, another setting)
  mlflow:SESSION | mlflow:RUN_ID | mlflow:repro/PAPER   results read back from MLflow

examples:
  repro compare old/results.csv reports/results.csv
  repro compare benchmarks/results/bench_a100.csv benchmarks/results/bench_h100.csv
  repro compare mlflow:3f2a9c1d0e4b mlflow:8c1e77aa0b12 --tracking-uri http://mlflow:5000
  repro compare A.csv B.csv --html compare.html
  repro compare A.csv B.csv --fail-on worse,moved,dropped   a CI gate; --fail-on none: no gate

Claims are matched by (paper, claim id). Where a claim's two rows name other hardware, a speed
claim's values are shown side by side, not judged against each other: its verdict (a ratio
judged against the claim, an absolute time recorded) still counts.

the gate (--fail-on, default worse,moved; results tables only):
"""
    + "".join(f"  {name:<8} {what}\n" for name, what in GATE_CHECKS.items())
    + f"""
exit status: 0 printed, the gate passed; 2 bad input (an unreadable file, two different kinds,
an unknown key or gate check); {EXIT_REGRESSION} the gate failed: a claim regressed (named above).
"""
)

MLFLOW_PREFIX = "mlflow:"


def mlflow_results(
    tracking_uri: str | None, params: str | None, key: str | None, papers: list[str] | None = None
) -> tuple[str, RowsRead]:
    """The store's URI and its results: of run or session ``key``, else each paper's newest; a
    row that cannot be a result (its paper no paper key) is left out, named."""
    uri = config.load_settings(params, tracking_uri=tracking_uri).tracking_uri
    tracking.check_tracking_uri(uri)
    rows = load_results_of(uri, key) if key else tracking.load_results(uri, papers)
    return uri, checked_rows(rows, f"MLflow at {uri}" + (f", {key}" if key else ""))


def load_side(spec: str, tracking_uri: str | None = None, params: str | None = None) -> Table:
    """One side of a comparison from a path or ``mlflow:KEY``."""
    if not spec.startswith(MLFLOW_PREFIX):
        return read_table(Path(spec))
    _, read = mlflow_results(tracking_uri, params, spec.removeprefix(MLFLOW_PREFIX))
    return Table("results", spec, read.rows, read.skipped)


def compare_with_current(
    other: str, rows: list[dict], tracking_uri: str | None = None, params: str | None = None
) -> Comparison:
    """`repro report --compare OTHER`: OTHER against the results being rendered, or, when
    OTHER is a benchmark file, against the benchmark files in benchmarks/results/."""
    baseline = load_side(other, tracking_uri, params)
    if baseline.kind == "results":
        return compare(baseline, Table("results", "this report", rows))
    from repro.report.bench_charts import read_benchmarks

    bench_rows, _ = read_benchmarks(BENCHMARKS_DIR)
    if not bench_rows:
        raise ReproError(
            f"--compare {other} is a benchmark file, and {BENCHMARKS_DIR} holds no bench_*.csv "
            "row with status ok to compare it with.",
            "run `repro bench` first, or compare two files with `repro compare A B`.",
        )
    return compare(baseline, Table("bench", f"{BENCHMARKS_DIR}/bench_*.csv", bench_rows))


def _cmd_compare(args: argparse.Namespace) -> int:
    a, b = (load_side(spec, args.tracking_uri, args.params) for spec in (args.a, args.b))
    checks = gate_checks(args.fail_on)
    result = compare(a, b)
    print("\n".join(result.lines))
    if args.html:
        atomic_write_text(Path(args.html), comparison_page(result))
        print(f"wrote {args.html}")
    failed = result.failures(checks)
    if failed:
        named = ", ".join(f"{n} {check}" for check, n in failed.items())
        print(f"regression gate failed: {named} (--fail-on {','.join(checks)}; "
              "--fail-on none turns the gate off)", file=sys.stderr)  # fmt: skip
        return EXIT_REGRESSION
    return 0


def gate_checks(text: str) -> list[str]:
    """--fail-on's checks: a comma-separated list of GATE_CHECKS, or none."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in GATE_CHECKS]
    if unknown or not names:
        raise ReproError(
            f"--fail-on {text!r}: {', '.join(unknown) or 'no check'} is no gate check.",
            f"name some of {', '.join(GATE_CHECKS)} (comma-separated), or none.",
        )
    return names


def _cmd_screenshot(args: argparse.Namespace) -> int:
    from repro.report import browser  # Pillow: off `repro --help`

    if args.page.startswith(("http://", "https://")):  # an app (the MLflow UI): no chart probe
        shot = browser.screenshot(args.page, Path(args.out), args.width, args.height,
                                  wait_ms=args.wait_ms or 20000)  # fmt: skip
        stats = browser.image_stats(shot)
        print(f"wrote {shot} ({stats.width}x{stats.height}, {stats.ink:.1%} ink)")
        return 1 if stats.blank else 0
    check = browser.check_page(Path(args.page))
    shot = browser.screenshot(Path(args.page), Path(args.out), args.width, args.height)
    stats = browser.image_stats(shot)
    bad = check.unrendered()
    print(
        f"{len(check.figures) - len(bad)} of {len(check.figures)} charts rendered, "
        f"{len(check.console)} console message(s), page {check.height} px tall; "
        f"wrote {shot} ({stats.width}x{stats.height}, {stats.ink:.1%} ink, "
        f"{stats.colours} colours)"
    )
    for line in check.console:
        print(f"console: {line}", file=sys.stderr)
    if bad:
        print("not rendered: " + ", ".join(bad), file=sys.stderr)
    if stats.blank:
        print(f"the screenshot {shot} is blank.", file=sys.stderr)
    return 1 if bad or check.console or stats.blank else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two results tables, MLflow sessions or benchmark files",
        description="Compare A (the baseline) with B. Results: the claims whose verdict "
        "changed and the measured values that moved beyond the claim's tolerance; a regression "
        f"exits {EXIT_REGRESSION}. "
        "Benchmarks: images/s of B over A per model and mode, naming the settings that differ.",
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", metavar="A", help="the baseline")
    p.add_argument("b", metavar="B", help="compared with A")
    p.add_argument("--html", metavar="FILE", help="also write the comparison, with a chart")
    p.add_argument(
        "--fail-on",
        metavar="CHECKS",
        default=",".join(DEFAULT_GATE),
        help=f"exit {EXIT_REGRESSION} when a claim fails one of these checks: "
        f"{', '.join(GATE_CHECKS)}, comma-separated, or none (default: "
        f"{','.join(DEFAULT_GATE)})",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI (for mlflow:KEY)")
    p.add_argument("--params", help="params file (default: ./params.yaml if present)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "screenshot",
        help="open the report in headless Chromium: check its charts, save a screenshot",
        description="Lay out the report in headless Chromium (Debian's chromium package), check "
        "that every chart rendered and the console stayed empty, and save a PNG of the top of "
        "the page. Exit status 1 when a chart did not render, the console logged anything or "
        "the screenshot is blank; 2 when Chromium is missing.",
    )
    p.add_argument(
        "--page",
        default="reports/index.html",
        help="the report (reports/index.html), or a URL such as an MLflow UI page",
    )
    p.add_argument("--out", default="reports/screenshot.png", help="PNG to write")
    p.add_argument(
        "--wait-ms", type=int, default=0, help="time a URL's scripts get to render (20000)"
    )
    p.add_argument("--width", type=int, default=1280, help="viewport width, px (1280)")
    p.add_argument("--height", type=int, default=4000, help="height captured, px (4000)")
    p.set_defaults(func=_cmd_screenshot)
