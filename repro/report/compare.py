"""`repro compare A B`: two results tables (claims) or two benchmark files (speed), side by side.

Results: claims matched by (paper, claim id), whatever machine measured them; the verdicts that
worsened or improved, the judged values that moved further than the claim's tolerance (taken
around A's value), speed claims measured on other hardware side by side, and every claim only
in one side named. ``ResultsDiff.failures`` is the regression gate `repro compare` exits on.
Benchmarks: per model and mode, images/s of B over A, with the settings that differ between
the two rows named. Pure functions over rows; where rows come from (CSV files, a measurement
folder, MLflow) is the caller's.
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

# The gate's checks (`repro compare --fail-on`): what makes the comparison exit EXIT_REGRESSION.
GATE_CHECKS = {
    "worse": "a verdict worsened (reproduced -> deviates, anything -> error)",
    "moved": "a judged value moved beyond its claim's tolerance, its verdict the same",
    "dropped": "a claim measured (or failed) in A is not-run in B",
    "missing": "a claim of A is not in B",
}
DEFAULT_GATE = ("worse", "moved")
EXIT_REGRESSION = 4
JUDGED = ("reproduced", "deviates")  # verdicts against the claim; `measured` is recorded only
MEASURED = ("reproduced", "deviates", "measured")
IMPROVED, WORSENED, NEUTRAL = "#2e7d32", "#c62828", "#757575"


def claim_key(row: dict[str, Any]) -> tuple[str, str]:
    """A claim is the same claim whatever machine, version or session measured it."""
    return (row.get("paper", ""), row.get("claim_id", ""))


def verdict_change(a: str, b: str) -> str | None:
    """How a claim's verdict went from A to B: worse, better, dropped (now not-run), new (now
    measured), rejudged (measured <-> judged: the hardware decides that), changed (unknown)."""
    if a == b:
        return None
    if b == "error" or (a, b) == ("reproduced", "deviates"):
        return "worse"
    if a == "error" and b in MEASURED or (a, b) == ("deviates", "reproduced"):
        return "better"
    if b == "not-run":
        return "dropped"
    if a == "not-run" and b in MEASURED:
        return "new"
    return "rejudged" if {a, b} <= set(MEASURED) else "changed"


def hardware_of(row: dict[str, Any]) -> str:
    return str(row.get("hardware") or "").strip()


def hardware_bound(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """A speed claim's value measured on other hardware: shown side by side, not judged A
    against B (the speed suite judges ratios against the claim, and so does the verdict)."""
    return a.get("kind") == "speed" and hardware_of(a) != hardware_of(b)


@dataclass
class ResultsDiff:
    changed: list[tuple[dict[str, Any], dict[str, Any], str]] = field(default_factory=list)
    moved: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    side_by_side: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    only_a: list[dict[str, Any]] = field(default_factory=list)
    only_b: list[dict[str, Any]] = field(default_factory=list)
    same: int = 0  # claims in both with the same verdict and a value within tolerance
    hardware: dict[tuple[str, str], int] = field(default_factory=dict)  # (A's, B's): claims

    def of(self, change: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [(ra, rb) for ra, rb, c in self.changed if c == change]

    def failures(self, checks: Sequence[str]) -> dict[str, int]:
        """Per gate check in ``checks``, the claims that fail it (only those that do)."""
        found = {
            "worse": len(self.of("worse")),
            "moved": len(self.moved),
            "dropped": len(self.of("dropped")),
            "missing": len(self.only_a),
        }
        return {check: found[check] for check in checks if found.get(check)}


def moved_beyond_tolerance(a: dict[str, Any], b: dict[str, Any]) -> bool:
    va, vb = number(a.get("measured")), number(b.get("measured"))
    if va is None or vb is None:
        return False
    tolerance = tolerance_of(b.get("tolerance") or a.get("tolerance") or "")
    allowed = tolerance.band(va) * abs(va)
    return abs(vb - va) > max(allowed, 1e-9 * max(abs(va), 1.0))


def closer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether B's measured value is nearer the claimed value than A's."""
    claimed, va, vb = (number(r.get(k)) for r, k in ((b, "claimed"), (a, "measured"),
                                                    (b, "measured")))  # fmt: skip
    return None not in (claimed, va, vb) and abs(vb - claimed) < abs(va - claimed)  # type: ignore[operator]


def compare_results(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> ResultsDiff:
    in_a = {claim_key(r): r for r in a}
    in_b = {claim_key(r): r for r in b}
    diff = ResultsDiff()
    for key, ra in in_a.items():
        rb = in_b.get(key)
        if rb is None:
            diff.only_a.append(ra)
            continue
        hardware = (hardware_of(ra), hardware_of(rb))
        diff.hardware[hardware] = diff.hardware.get(hardware, 0) + 1
        change = verdict_change(str(ra.get("verdict", "")), str(rb.get("verdict", "")))
        unjudged = hardware_bound(ra, rb) or ra.get("verdict") not in JUDGED
        if change is not None:
            diff.changed.append((ra, rb, change))
        elif (
            unjudged
            and any(str(r.get("measured") or "").strip() for r in (ra, rb))
            and (hardware[0] != hardware[1] or moved_beyond_tolerance(ra, rb))
        ):
            diff.side_by_side.append((ra, rb))
        elif not unjudged and moved_beyond_tolerance(ra, rb):
            diff.moved.append((ra, rb))
        else:
            diff.same += 1
    diff.only_b = [r for key, r in in_b.items() if key not in in_a]
    return diff


def with_unit(value: Any, unit: Any) -> str:
    """A cell and its claim's unit: '8.29%', '6x', '138 M', '96x55x55'; '-' for none."""
    text, unit = str(value if value is not None else "").strip(), str(unit or "").strip()
    if not text:
        return "-"
    if unit in ("", "count", "shape") or number(text) is None:
        return text
    return f"{text}{unit}" if unit in ("%", "x") else f"{text} {unit}"


def _claim(r: dict[str, Any]) -> str:
    where = f" [{r['model']}]" if r.get("model") else ""
    return f"{r.get('paper')}: {r.get('row')}{where}"


def _values(ra: dict[str, Any], rb: dict[str, Any]) -> str:
    """'vgg / conv1-params; measured 1.7 M -> 1.8 M, claimed 1.7 M ±2%'."""
    unit = rb.get("unit") or ra.get("unit")
    measured = (with_unit(r.get("measured"), unit) for r in (ra, rb))
    claimed = f"{with_unit(rb.get('claimed'), unit)} {rb.get('tolerance') or 'exact'}"
    name = f"{ra.get('paper')} / {ra.get('claim_id')}"
    return f"{name}; measured {' -> '.join(measured)}, claimed {claimed}"


def _named(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Claims as 'paper / claim id', one line per paper."""
    by_paper: dict[str, list[str]] = {}
    for r in rows:
        by_paper.setdefault(str(r.get("paper", "")), []).append(str(r.get("claim_id", "")))
    return [f"  {paper} / {', '.join(ids)}" for paper, ids in by_paper.items()]


CHANGE_HEADINGS = {
    "worse": "WORSE: verdict worsened (A -> B)",
    "better": "better: verdict improved (A -> B)",
    "dropped": "dropped: measured in A, not-run in B",
    "new": "new: not-run in A, measured in B",
    "rejudged": "rejudged: recorded on one side, judged on the other (the hardware decides)",
    "changed": "verdict changed (A -> B)",
}


def _hardware_lines(diff: ResultsDiff) -> list[str]:
    out = []
    for (ha, hb), n in sorted(diff.hardware.items(), key=lambda item: -item[1]):
        if ha == hb:
            out.append(f"hardware: the same for {n} claim(s): {ha or 'not recorded'}")
        else:
            out.append(f"hardware: other for {n} claim(s): A {ha or 'not recorded'}; "
                       f"B {hb or 'not recorded'}")  # fmt: skip
    return out


def results_lines(diff: ResultsDiff, a: str, b: str) -> list[str]:
    both = diff.same + len(diff.changed) + len(diff.moved) + len(diff.side_by_side)
    out = [
        f"claims in both: {both}; worse: {len(diff.of('worse'))}; better: "
        f"{len(diff.of('better'))}; verdict changed: {len(diff.changed)}; moved beyond "
        f"tolerance: {len(diff.moved)}; unchanged: {diff.same}; only in A: {len(diff.only_a)}; "
        f"only in B: {len(diff.only_b)}  (A = {a}, B = {b})",
        *_hardware_lines(diff),
    ]
    for change, heading in CHANGE_HEADINGS.items():
        pairs = diff.of(change)
        if pairs:
            out += ["", f"{heading}:"]
            out += [f"  {_claim(ra)}: {ra.get('verdict')} -> {rb.get('verdict')} "
                    f"({_values(ra, rb)})" for ra, rb in pairs]  # fmt: skip
    if diff.moved:
        out += ["", "MOVED: measured value moved beyond the claim's tolerance (A -> B):"]
        out += [f"  {_claim(ra)}: {'closer to' if closer(ra, rb) else 'further from'} the "
                f"claim ({_values(ra, rb)})" for ra, rb in diff.moved]  # fmt: skip
    if diff.side_by_side:
        out += ["", "side by side, not judged A against B (a speed claim on other hardware, "
                "or a value recorded, not judged):"]  # fmt: skip
        out += [f"  {_claim(ra)}: {ra.get('verdict')}, {_values(ra, rb)}{_ratio_text(ra, rb)}"
                for ra, rb in diff.side_by_side]  # fmt: skip
    for side, rows in (("A", diff.only_a), ("B", diff.only_b)):
        if rows:
            out += ["", f"only in {side} ({len(rows)}), paper / claim id:", *_named(rows)]
    return out


def _ratio_text(ra: dict[str, Any], rb: dict[str, Any]) -> str:
    va, vb = number(ra.get("measured")), number(rb.get("measured"))
    return f"; B / A x{vb / va:.3g}" if va and vb is not None else ""


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
            f"  {name:<{width}}  {r.a_images_per_s:>10.4g} -> {r.b_images_per_s:>10.4g} "
            f"images/s  x{r.ratio:.3f} {'faster' if r.ratio >= 1 else 'slower'}"
            + (f"  [{r.differs}]" if r.differs else "")
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
            IMPROVED if r.ratio >= 1 else WORSENED,
            f"{'faster' if r.ratio >= 1 else 'slower'} x{r.ratio:.2f}",
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
    diff: ResultsDiff | None = None  # results tables only: what the gate reads

    def failures(self, checks: Sequence[str]) -> dict[str, int]:
        """The gate: claims per failed check (none for benchmark files: speed is a setting's)."""
        return self.diff.failures(checks) if self.diff is not None else {}


def compare(a: Table, b: Table) -> Comparison:
    if a.kind != b.kind:
        raise ReproError(
            f"cannot compare {a.kind} ({a.name}) with {b.kind} ({b.name}).",
            "compare two results tables, or two benchmark files.",
        )
    left_out = [f"left out of {side}: {line}" for side, t in (("A", a), ("B", b))
                for line in t.skipped]  # fmt: skip
    diff = None
    if a.kind == "results":
        diff = compare_results(a.rows, b.rows)
        lines, chart = results_lines(diff, a.name, b.name), results_chart(diff)
    else:
        ratios, only_a, only_b = compare_bench(a.rows, b.rows)
        lines = bench_lines(ratios, only_a, only_b, a.name, b.name)
        chart = bench_chart(ratios, a.name, b.name)
    return Comparison(a, b, [printable(line) for line in lines + left_out], chart, diff)


def _marked(ra: dict[str, Any], rb: dict[str, Any], change: str) -> tuple[str, str]:
    """The bar's colour and the word beside it: colour alone marks nothing for some readers."""
    if change == "moved":
        change = "closer" if closer(ra, rb) else "further"
    if change in ("worse", "further"):
        return WORSENED, change
    if change in ("better", "closer"):
        return IMPROVED, change
    return NEUTRAL, change


def results_chart(diff: ResultsDiff) -> Chart | None:
    """B's measured value over A's for the claims that changed verdict or moved: improvements
    green and worded 'better'/'closer', regressions red and worded 'worse'/'further'."""
    pairs = [(ra, rb, change) for ra, rb, change in diff.changed]
    pairs += [(ra, rb, "moved") for ra, rb in diff.moved]
    bars = []
    for ra, rb, change in pairs:
        va, vb = number(ra.get("measured")), number(rb.get("measured"))
        if not (va and vb and vb / va > 0):
            continue
        colour, word = _marked(ra, rb, change)
        unit = rb.get("unit") or ra.get("unit")
        bars.append(RatioBar(
            shorten(f"{ra.get('paper')} / {ra.get('claim_id')}", 60),
            vb / va,
            f"{_claim(ra)}: {with_unit(ra.get('measured'), unit)} -> "
            f"{with_unit(rb.get('measured'), unit)} ({ra.get('verdict')} -> {rb.get('verdict')}"
            f"): {word}",
            colour,
            f"{word} x{vb / va:.3g}",
        ))  # fmt: skip
    if not bars:
        return None
    undrawn = len(pairs) - len(bars)
    caption = (f"{len(bars)} claim(s) whose value moved or verdict changed: green and 'better' or "
               "'closer' (to the claim) improved, red and 'worse' or 'further' regressed; hover "
               "for values.")  # fmt: skip
    if undrawn:
        caption += f" Not drawn: {undrawn} without a value on both sides."
    return ratio_bars("compare-claims", "Claims that moved", bars,
                      "measured in B / measured in A (log scale)", caption)  # fmt: skip
