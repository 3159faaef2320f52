"""`repro compare A B`: two results tables (claims) or two benchmark files (speed), side by side.

Results: the claims whose verdict changed between A and B, and the measured values that moved
further than the claim's tolerance (taken around A's value). Benchmarks: per model and mode,
images/s of B over A, with the settings that differ between the two rows named. Pure functions
over rows; where rows come from (CSV files, a measurement folder, MLflow) is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.files import printable
from repro.report.charts import Chart, RatioBar, ratio_bars, shorten, tolerance_of
from repro.report.numbers import number
from repro.report.rows import RowsRead, checked_rows, read_csv, result_files

# Settings shown when two benchmark rows of one model differ in them (device: other hardware).
BENCH_SETTINGS = (
    "device", "precision", "torch", "cuda", "gpu", "driver", "batch_size", "channels_last",
    "compile", "parallel", "workers", "data_source", "iters", "repeats",
)  # fmt: skip


@dataclass
class Table:
    """Rows read from one side of a comparison, and what they are."""

    kind: str  # "results" or "bench"
    name: str  # what the user passed, for headings
    rows: list[dict[str, Any]]
    skipped: list[str] = field(default_factory=list)  # rows left out, each "where: why"


def kind_of(columns: Sequence[str]) -> str | None:
    cols = set(columns)
    if {"paper", "claim_id", "verdict", "measured"} <= cols:
        return "results"
    if {"model", "mode", "images_per_s"} <= cols:
        return "bench"
    return None


def read_table(path: Path) -> Table:
    """A results.csv, a measurement folder (reports/measurements) or a benchmark CSV. A row
    that cannot be compared (cut short by a write cut off, a paper that is no paper key) is
    left out and named in the table's ``skipped``."""
    path = Path(path)
    if path.is_dir():
        files = result_files(path)
        if not files:
            raise ReproError(f"{path} holds no CSV files.", "pass a results.csv or a bench CSV.")
        tables = [read_table(f) for f in files]
        kinds = {t.kind for t in tables}
        if len(kinds) > 1:
            raise ReproError(
                f"{path} mixes results and benchmark files.", "pass one of the files instead."
            )
        rows = [r for t in tables for r in t.rows]
        return Table(kinds.pop(), str(path), rows, [s for t in tables for s in t.skipped])
    if not path.is_file():
        raise ReproError(
            f"no file or folder at {path}.",
            "pass a results.csv, a measurement folder, a benchmarks/results/bench_*.csv file "
            "or mlflow:SESSION|RUN_ID|EXPERIMENT.",
        )
    read, columns = read_csv(path)
    kind = kind_of(columns)
    if kind is None and not columns and read.skipped:
        raise ReproError(
            f"cannot compare {printable(read.skipped[0])}",
            "pass a results table or benchmark file repro wrote; rerun what wrote it if that "
            "write was cut off.",
        )
    if kind is None:
        raise ReproError(
            f"{path} is neither a results table nor a benchmark file (columns: "
            f"{printable(', '.join(columns[:8])) or 'none'}).",
            "a results table has paper, claim_id, verdict and measured; a benchmark file has "
            "model, mode and images_per_s.",
        )
    if kind == "results":  # the paper keys too, now that the kind is known
        checked = checked_rows(read.rows, str(path))
        read = RowsRead(checked.rows, read.skipped + checked.skipped)
    return Table(kind, str(path), read.rows, read.skipped)


# --- Claims -----------------------------------------------------------------------------------


def claim_key(row: dict[str, Any]) -> tuple[str, ...]:
    return (row.get("paper", ""), row.get("claim_id", ""), row.get("model", ""),
            row.get("layer", ""), row.get("hardware", ""))  # fmt: skip


@dataclass
class ResultsDiff:
    changed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    moved: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    only_a: list[dict[str, Any]] = field(default_factory=list)
    only_b: list[dict[str, Any]] = field(default_factory=list)
    same: int = 0  # claims in both with the same verdict and a value within tolerance


def moved_beyond_tolerance(a: dict[str, Any], b: dict[str, Any]) -> bool:
    va, vb = number(a.get("measured")), number(b.get("measured"))
    if va is None or vb is None:
        return False
    tolerance = tolerance_of(b.get("tolerance") or a.get("tolerance") or "")
    allowed = tolerance.band(va) * abs(va)
    return abs(vb - va) > max(allowed, 1e-9 * max(abs(va), 1.0))


def compare_results(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> ResultsDiff:
    in_a = {claim_key(r): r for r in a}
    in_b = {claim_key(r): r for r in b}
    diff = ResultsDiff()
    for key, ra in in_a.items():
        rb = in_b.get(key)
        if rb is None:
            diff.only_a.append(ra)
        elif ra.get("verdict") != rb.get("verdict"):
            diff.changed.append((ra, rb))
        elif moved_beyond_tolerance(ra, rb):
            diff.moved.append((ra, rb))
        else:
            diff.same += 1
    diff.only_b = [r for key, r in in_b.items() if key not in in_a]
    return diff


def _claim(r: dict[str, Any]) -> str:
    where = f" [{r['model']}]" if r.get("model") else ""
    return f"{r.get('paper')}: {r.get('row')}{where}"


def results_lines(diff: ResultsDiff, a: str, b: str) -> list[str]:
    both = diff.same + len(diff.changed) + len(diff.moved)
    out = [
        f"claims in both: {both}; verdict changed: {len(diff.changed)}; moved beyond tolerance: "
        f"{len(diff.moved)}; unchanged: {diff.same}; only in A: {len(diff.only_a)}; only in B: "
        f"{len(diff.only_b)}  (A = {a}, B = {b})"
    ]
    if diff.changed:
        out += ["", "verdict changed (A -> B):"]
        out += [
            f"  {_claim(ra)}: {ra.get('verdict')} -> {rb.get('verdict')} "
            f"(measured {ra.get('measured') or '-'} -> {rb.get('measured') or '-'}, claimed "
            f"{rb.get('claimed')})"
            for ra, rb in diff.changed
        ]
    if diff.moved:
        out += ["", "measured value moved beyond the claim's tolerance (A -> B):"]
        out += [
            f"  {_claim(ra)}: {ra.get('measured')} -> {rb.get('measured')} {rb.get('unit', '')} "
            f"(tolerance {rb.get('tolerance') or 'exact'})"
            for ra, rb in diff.moved
        ]
    return out


# --- Benchmarks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedRatio:
    model: str
    mode: str
    a_images_per_s: float
    b_images_per_s: float
    differs: str  # "batch_size 32 -> 8, device ... -> ..."; empty when the settings match

    @property
    def ratio(self) -> float:
        return self.b_images_per_s / self.a_images_per_s


def _latest_ok(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:  # files are appended in time order: the last ok row of a model wins
        ips = number(r.get("images_per_s"))
        if r.get("status", "ok") == "ok" and ips and ips > 0:
            out[(r.get("model", ""), r.get("mode", ""))] = r
    return out


def compare_bench(
    a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]
) -> tuple[list[SpeedRatio], list[str], list[str]]:
    """(ratios for the models in both, 'model (mode)' only in A, only in B)."""
    in_a, in_b = _latest_ok(a), _latest_ok(b)
    ratios = []
    for key in sorted(set(in_a) & set(in_b)):
        ra, rb = in_a[key], in_b[key]
        differs = [
            f"{k} {ra.get(k) or '-'} -> {rb.get(k) or '-'}"
            for k in BENCH_SETTINGS
            if (ra.get(k) or "") != (rb.get(k) or "")
        ]
        ratios.append(SpeedRatio(key[0], key[1], float(ra["images_per_s"]),
                                 float(rb["images_per_s"]), "; ".join(differs)))  # fmt: skip
    label = lambda k: f"{k[0]} ({k[1]})"  # noqa: E731
    return (
        ratios,
        [label(k) for k in sorted(set(in_a) - set(in_b))],
        [label(k) for k in sorted(set(in_b) - set(in_a))],
    )


def bench_lines(ratios: Sequence[SpeedRatio], only_a: list[str], only_b: list[str],
                a: str, b: str) -> list[str]:  # fmt: skip
    out = [f"images/s, B / A  (A = {a}, B = {b})"]
    if not ratios:
        out.append("  no model and mode is in both files with status ok.")
    width = max([len(f"{r.model} ({r.mode})") for r in ratios] + [10])
    for r in ratios:
        name = f"{r.model} ({r.mode})"
        out.append(
            f"  {name:<{width}}  {r.a_images_per_s:>10.4g} -> {r.b_images_per_s:>10.4g}  "
            f"x{r.ratio:.3f}" + (f"  [{r.differs}]" if r.differs else "")
        )
    if ratios:
        geo = math.exp(sum(math.log(r.ratio) for r in ratios) / len(ratios))
        out.append(f"  geometric mean of {len(ratios)} ratio(s): x{geo:.3f}")
    if only_a:
        out.append("  only in A: " + ", ".join(only_a))
    if only_b:
        out.append("  only in B: " + ", ".join(only_b))
    return out


def bench_chart(ratios: Sequence[SpeedRatio], a: str, b: str) -> Chart | None:
    if not ratios:
        return None
    bars = [
        RatioBar(
            f"{r.model} ({r.mode})",
            r.ratio,
            f"{r.model} ({r.mode}): {r.a_images_per_s:.4g} -> {r.b_images_per_s:.4g} "
            "images/s" + (f"\n{r.differs}" if r.differs else ""),
            "#2e7d32" if r.ratio >= 1 else "#c62828",
            f"x{r.ratio:.2f}",
        )  # fmt: skip
        for r in ratios
    ]
    caption = f"Speed of B ({shorten(b, 70)}) relative to A ({shorten(a, 70)}); hover for values."
    return ratio_bars("compare-speed", "Speed ratio B / A", bars,
                      "images/s of B / images/s of A (log scale)", caption)  # fmt: skip


@dataclass
class Comparison:
    """Everything `repro compare` prints (html_page.comparison_section: the same as HTML)."""

    a: Table
    b: Table
    lines: list[str]
    chart: Chart | None = None


def compare(a: Table, b: Table) -> Comparison:
    if a.kind != b.kind:
        raise ReproError(
            f"cannot compare {a.kind} ({a.name}) with {b.kind} ({b.name}).",
            "compare two results tables, or two benchmark files.",
        )
    left_out = [f"left out of {side}: {line}" for side, t in (("A", a), ("B", b))
                for line in t.skipped]  # fmt: skip
    if a.kind == "results":
        diff = compare_results(a.rows, b.rows)
        lines, chart = results_lines(diff, a.name, b.name), results_chart(diff)
    else:
        ratios, only_a, only_b = compare_bench(a.rows, b.rows)
        lines = bench_lines(ratios, only_a, only_b, a.name, b.name)
        chart = bench_chart(ratios, a.name, b.name)
    return Comparison(a, b, [printable(line) for line in lines + left_out], chart)


def results_chart(diff: ResultsDiff) -> Chart | None:
    """B's measured value over A's for the claims that changed verdict or moved."""
    pairs = [
        (ra, rb, number(ra.get("measured")), number(rb.get("measured")))
        for ra, rb in diff.changed + diff.moved
    ]
    bars = [
        RatioBar(
            shorten(_claim(ra), 60),
            vb / va,
            f"{_claim(ra)}: {va:g} -> {vb:g} ({ra.get('verdict')} -> {rb.get('verdict')})",
            "#6a1b9a",
        )  # fmt: skip
        for ra, rb, va, vb in pairs
        if va and vb and vb / va > 0
    ]
    if not bars:
        return None
    caption = f"{len(bars)} claim(s) whose value moved or verdict changed; hover for values."
    return ratio_bars("compare-claims", "Claims that moved", bars,
                      "measured in B / measured in A (log scale)", caption)  # fmt: skip
