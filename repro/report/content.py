"""What the report shows, gathered once for both renderers: the results grouped by paper, the
verdict counts, the environment, the stage timings, the demonstrations and the charts."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from repro.claims import PAPERS_DIR, list_papers, load_paper
from repro.errors import ReproError
from repro.files import read_text
from repro.report.charts import Chart
from repro.report.hardware import HardwareRun, SpeedTable, speed_table
from repro.report.numbers import demo_text, measured_text, number
from repro.report.rows import ROW_COLUMNS, RowsRead, paper_key_problem, read_csv, result_files

if TYPE_CHECKING:
    from repro.report.compare import Comparison
from repro.verdicts import CORE_VERDICTS, VERDICTS

SHOWN = [
    "row",
    "metric",
    "claimed",
    "measured",
    "unit",
    "tolerance",
    "verdict",
    "measured on",
    "hardware",
    "note",
]


def cell(row: dict[str, Any], column: str) -> str:
    if column == "measured on":
        model, layer = row.get("model", ""), row.get("layer", "")
        return f"{model} [{layer}]" if layer else model
    if column == "measured":
        return measured_text(str(row.get("measured", "")), str(row.get("claimed", "")))
    return str(row.get(column, ""))


class Measurements(NamedTuple):
    """A measurement folder as read: the result rows, each paper's metadata (timings,
    environment) and what was left out (``where: why``, each logged)."""

    rows: list[dict[str, Any]]
    metas: list[dict[str, Any]]
    skipped: list[str]


def read_measurements(directory: Path) -> Measurements:
    """Every <paper>.csv of ``directory`` and its <paper>.json. A file or row that cannot be a
    result (empty, cut off, not UTF-8, a paper that is no paper key) is a counted skip, named;
    so is metadata that is not a JSON object."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReproError(
            f"no measurements at {directory}.",
            "run `repro run PAPER...` (or `dvc repro`) first, or point --measurements at them.",
        )
    read = RowsRead()
    metas: list[dict[str, Any]] = []
    for path in result_files(directory):
        read.extend(read_csv(path, ROW_COLUMNS)[0])
        meta = path.with_suffix(".json")
        if meta.exists():
            try:
                data = json.loads(read_text(meta))
            except (OSError, ReproError, ValueError) as exc:
                read.skip(str(meta), f"not readable as JSON ({getattr(exc, 'cause', exc)})")
                continue
            problem = None if isinstance(data, dict) else "not a JSON object"
            problem = problem or paper_key_problem(data.get("paper"))
            if problem:
                read.skip(str(meta), f"{problem}; its timings and environment are left out")
            else:
                metas.append(data)
    return Measurements(read.rows, metas, read.skipped)


DEMOS_NOTE = (
    "Demonstrations of the accuracy path on data that ships with the harness (or that it "
    "writes): real training and the official metrics, run by `make reproduce` on a CPU. They "
    "are not the papers' claims and carry no verdict."
)


def read_demos(directory: Path) -> dict[str, list[dict[str, str]]]:
    """Each demo's result table (reports/demos/<demo>.csv), by demo name; a file or row that
    cannot be read is left out and logged."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    return {path.stem: read_csv(path)[0].rows for path in sorted(directory.glob("*.csv"))}


def _demo_tables(demos: dict[str, list[dict[str, str]]]) -> list[tuple[str, list[str], list]]:
    shown = {
        name: [{k: demo_text(v) for k, v in r.items()} for r in rows]
        for name, rows in demos.items()
    }
    return [(name, list(rows[0]), rows) for name, rows in shown.items() if rows]


def verdict_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The summary's verdict columns: the core four, and `measured` where a row has it."""
    present = {r["verdict"] for r in rows}
    return [v for v in VERDICTS if v in CORE_VERDICTS or v in present]


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        out[r["paper"]][r["verdict"]] += 1
    return dict(out)


def _titles(papers: Sequence[str]) -> dict[str, str]:
    titles = {}
    known = set(list_papers(PAPERS_DIR))
    for p in papers:
        if p in known:
            try:
                info = load_paper(p)
                titles[p] = f"{info.title} ({info.authors}, {info.year})"
            except ReproError:
                titles[p] = p
    return titles


def _by_paper_table(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        grouped.setdefault(r["paper"], {}).setdefault(r["table"], []).append(r)
    return grouped


def demo_seconds(directory: Path) -> dict[str, float]:
    """Each demo stage's wall time (its whole process), from reports/demos/<demo>.json."""
    out = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        seconds = number(data.get("process_seconds")) if isinstance(data, dict) else None
        if seconds is not None:
            out[path.stem] = seconds
    return out


def _seconds(meta: dict[str, Any], *keys: str) -> float:
    """The first of ``keys`` that ``meta`` holds as a finite number; 0 when none is."""
    return next((v for k in keys if (v := number(meta.get(k))) is not None), 0.0)


def _timings(
    metas: Sequence[dict[str, Any]], report_seconds: float, demos: dict[str, float] | None = None
) -> list[tuple[str, str]]:
    """Each stage's wall time (its whole process) and where it went."""
    lines = []
    total = report_seconds
    for m in sorted(metas, key=lambda m: m["paper"]):
        wall = _seconds(m, "process_seconds", "run_seconds")
        total += wall
        if m.get("models"):
            parts = (
                f"Ray start-up {_seconds(m, 'ray_startup_s'):.1f} s, {m['models']} model(s) "
                f"measured in {_seconds(m, 'measure_seconds'):.1f} s of task time, MLflow "
                f"logging {_seconds(m, 'mlflow_seconds'):.1f} s"
            )
        else:
            parts = f"no model to measure, MLflow logging {_seconds(m, 'mlflow_seconds'):.1f} s"
        lines.append((f"measure@{m['paper']}", f"{wall:.1f} s ({parts})"))
    for name, seconds in sorted((demos or {}).items()):
        total += seconds
        lines.append((f"demo@{name}", f"{seconds:.1f} s"))
    lines.append(("report", f"{report_seconds:.1f} s"))
    lines.append(("all stages", f"{total:.1f} s (DVC's own overhead not included)"))
    return lines


@dataclass
class Charts:
    """Every chart of one report, drawn once and shown by both renderers."""

    overview: list[Chart] = field(default_factory=list)  # verdicts per paper, deviations
    papers: dict[str, Chart] = field(default_factory=dict)
    bench: list[Chart] = field(default_factory=list)
    bench_missing: list[str] = field(default_factory=list)  # what had nothing to draw, and why
    training: list[Chart] = field(default_factory=list)
    trained: dict[str, list[Chart]] = field(default_factory=dict)  # paper -> committed curves
    comparison: Comparison | None = None  # `repro report --compare OTHER`: its lines and chart

    def all(self) -> list[Chart]:
        compared = [self.comparison.chart] if self.comparison and self.comparison.chart else []
        trained = [c for charts in self.trained.values() for c in charts]
        return [
            *self.overview, *compared, *self.papers.values(), *self.bench, *self.training,
            *trained,
        ]  # fmt: skip


BENCHMARKS_DIR = Path("benchmarks/results")


def build_charts(
    rows: Sequence[dict[str, Any]],
    demos_dir: Path | None = None,
    bench_dir: Path | None = BENCHMARKS_DIR,
    trained: Sequence[HardwareRun] = (),
) -> Charts:
    from repro.report import bench_charts, charts

    summary = summarize(rows)
    drawn = charts.claim_charts(rows, summary, verdict_columns(rows))
    out = Charts(
        overview=[c for c in drawn if not c.name.startswith("paper-")],
        papers={c.name.removeprefix("paper-"): c for c in drawn if c.name.startswith("paper-")},
    )
    if bench_dir is not None:
        bench, scaling = bench_charts.read_benchmarks(Path(bench_dir))
        out.bench, out.bench_missing = bench_charts.bench_charts(bench, scaling)
    if demos_dir is not None:
        out.training = bench_charts.training_charts(Path(demos_dir))
    curves = bench_charts.committed_curve_charts([(r.folder, r.label) for r in trained])
    out.trained = {paper: c for paper, c in curves.items() if paper in summary}  # shown: drawn
    return out


def _environments(metas: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The environment the measurements ran in, and a line per paper measured in another one
    (another commit, device or library version), naming what differs."""
    envs = [(m.get("paper", "?"), m.get("environment")) for m in metas]
    envs = [(p, e) for p, e in envs if isinstance(e, dict) and e]
    if not envs:
        return {}, []
    first = envs[0][1]
    others = []
    for paper, env in envs[1:]:
        differs = [k for k in sorted(set(first) | set(env)) if first.get(k) != env.get(k)]
        if differs:
            others.append(f"{paper}: " + ", ".join(f"{k} {env.get(k, '(none)')}" for k in differs))
    return first, others


@dataclass
class Content:
    """What both renderers show, computed once: the formats differ, the rows do not."""

    summary: dict[str, Counter[str]]  # paper -> verdict counts
    total: Counter[str]
    columns: list[str]  # the verdicts shown
    titles: dict[str, str]
    env: dict[str, Any]
    timings: list[tuple[str, str]]
    demo_tables: list[tuple[str, list[str], list[dict[str, str]]]]
    papers: dict[str, dict[str, list[dict[str, Any]]]]  # paper -> table -> rows
    charts: Charts
    env_differs: list[str]  # papers measured in another environment than ``env``
    speed: SpeedTable | None = None  # the speed claims, one column per hardware
    skipped: list[str] = field(default_factory=list)  # files and rows left out, and why

    @classmethod
    def of(
        cls,
        rows: Sequence[dict[str, Any]],
        metas: Sequence[dict[str, Any]],
        report_seconds: float,
        demos: dict[str, list[dict[str, str]]] | None,
        demo_times: dict[str, float] | None,
        charts: Charts | None = None,
        speed_runs: Sequence[HardwareRun] = (),
        skipped: Sequence[str] = (),
    ) -> Content:
        summary = summarize(rows)
        env, differs = _environments(metas)
        total: Counter[str] = Counter()
        for counts in summary.values():
            total.update(counts)
        return cls(
            summary=summary,
            total=total,
            columns=verdict_columns(rows),
            titles=_titles(list(summary)),
            env=env,
            timings=_timings(metas, report_seconds, demo_times),
            demo_tables=_demo_tables(demos or {}),
            papers=dict(sorted(_by_paper_table(rows).items())),
            charts=charts or Charts(),
            env_differs=differs,
            speed=speed_table(rows, speed_runs),
            skipped=list(skipped),
        )


LEGEND = (
    "Verdicts: `reproduced` (within the claim's tolerance), `deviates` (outside it; the note "
    "gives both values and the likely cause), `measured` (an absolute time or rate measured on "
    "other hardware than the paper's: recorded beside the paper's hardware, not judged; the "
    "ratios between methods are judged instead), `not-run` (cannot be measured here; the note "
    "says why), `error` (the measurement failed; the note says how)."
)
BENCH_NOTE = (
    "From the benchmark files in `benchmarks/results/` (`repro bench`, `repro scaling`): each "
    "file names its device, precision and torch version; hover a bar or point for its value."
)
SKIPPED_NOTE = (
    "Left out of this report: files and rows of the results that could not be read as "
    "results (fix or regenerate them, then rerun `repro report`):"
)
SPEED_NOTE = (
    "The papers' speed claims as the speed suite timed them on each hardware with results in "
    "`benchmarks/speed_claims/<environment>/` (`repro run PAPER --suite speed --out ...`): one "
    "column per hardware; ratios between methods are judged, absolute times recorded."
)
