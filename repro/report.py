"""Render the report: reports/results.csv, reports/README.md and a self-contained index.html.

Input is the flat results table (from the measurement files or from MLflow) and, where present,
the per-paper metadata the measure stage wrote (timings, environment).
"""

from __future__ import annotations

import csv
import html
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from repro.claims import PAPERS_DIR, list_papers, load_paper
from repro.errors import ReproError
from repro.files import atomic_write_text
from repro.runner.write import process_seconds, write_results_csv
from repro.verdicts import CORE_VERDICTS, RESULT_COLUMNS, VERDICTS

SHOWN = [
    "row",
    "metric",
    "claimed",
    "measured",
    "unit",
    "tolerance",
    "verdict",
    "measured on",
    "note",
]


def _cell(row: dict[str, Any], column: str) -> str:
    if column == "measured on":
        model, layer = row.get("model", ""), row.get("layer", "")
        return f"{model} [{layer}]" if layer else model
    return str(row.get(column, ""))


def read_measurements(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ReproError(
            f"no measurements at {directory}.",
            "run `repro run PAPER...` (or `dvc repro`) first, or point --measurements at them.",
        )
    rows: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.csv")):
        with path.open(newline="") as fh:
            rows.extend(csv.DictReader(fh))
        meta = path.with_suffix(".json")
        if meta.exists():
            metas.append(json.loads(meta.read_text()))
    return rows, metas


DEMOS_NOTE = (
    "Demonstrations of the accuracy path on data that ships with the harness (or that it "
    "writes): real training and the official metrics, run by `make reproduce` on a CPU. They "
    "are not the papers' claims and carry no verdict."
)


def read_demos(directory: Path) -> dict[str, list[dict[str, str]]]:
    """Each demo's result table (reports/demos/<demo>.csv), by demo name."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    out = {}
    for path in sorted(directory.glob("*.csv")):
        with path.open(newline="") as fh:
            out[path.stem] = list(csv.DictReader(fh))
    return out


def _demo_tables(demos: dict[str, list[dict[str, str]]]) -> list[tuple[str, list[str], list]]:
    return [(name, list(rows[0]), rows) for name, rows in demos.items() if rows]


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


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def demo_seconds(directory: Path) -> dict[str, float]:
    """Each demo stage's wall time (its whole process), from reports/demos/<demo>.json."""
    out = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            seconds = json.loads(path.read_text()).get("process_seconds")
        except (OSError, ValueError):
            continue
        if isinstance(seconds, int | float):
            out[path.stem] = float(seconds)
    return out


def _timings(
    metas: Sequence[dict[str, Any]], report_seconds: float, demos: dict[str, float] | None = None
) -> list[tuple[str, str]]:
    """Each stage's wall time (its whole process) and where it went."""
    lines = []
    total = report_seconds
    for m in sorted(metas, key=lambda m: m["paper"]):
        wall = m.get("process_seconds", m.get("run_seconds", 0.0))
        total += wall
        if m.get("models"):
            parts = (
                f"Ray start-up {m.get('ray_startup_s', 0):.1f} s, {m['models']} model(s) measured "
                f"in {m.get('measure_seconds', 0):.1f} s of task time, MLflow logging "
                f"{m.get('mlflow_seconds', 0):.1f} s"
            )
        else:
            parts = f"no model to measure, MLflow logging {m.get('mlflow_seconds', 0):.1f} s"
        lines.append((f"measure@{m['paper']}", f"{wall:.1f} s ({parts})"))
    for name, seconds in sorted((demos or {}).items()):
        total += seconds
        lines.append((f"demo@{name}", f"{seconds:.1f} s"))
    lines.append(("report", f"{report_seconds:.1f} s"))
    lines.append(("all stages", f"{total:.1f} s (DVC's own overhead not included)"))
    return lines


@dataclass
class _Content:
    """What both renderers show, computed once: the formats differ, the rows do not."""

    summary: dict[str, Counter[str]]  # paper -> verdict counts
    total: Counter[str]
    columns: list[str]  # the verdicts shown
    titles: dict[str, str]
    env: dict[str, Any]
    timings: list[tuple[str, str]]
    demo_tables: list[tuple[str, list[str], list[dict[str, str]]]]
    papers: dict[str, dict[str, list[dict[str, Any]]]]  # paper -> table -> rows

    @classmethod
    def of(
        cls,
        rows: Sequence[dict[str, Any]],
        metas: Sequence[dict[str, Any]],
        report_seconds: float,
        demos: dict[str, list[dict[str, str]]] | None,
        demo_times: dict[str, float] | None,
    ) -> _Content:
        summary = summarize(rows)
        total: Counter[str] = Counter()
        for counts in summary.values():
            total.update(counts)
        return cls(
            summary=summary,
            total=total,
            columns=verdict_columns(rows),
            titles=_titles(list(summary)),
            env=next((m.get("environment") for m in metas if m.get("environment")), {}) or {},
            timings=_timings(metas, report_seconds, demo_times),
            demo_tables=_demo_tables(demos or {}),
            papers=dict(sorted(_by_paper_table(rows).items())),
        )


def render_markdown(
    rows: Sequence[dict[str, Any]],
    metas: Sequence[dict[str, Any]],
    report_seconds: float,
    demos: dict[str, list[dict[str, str]]] | None = None,
    demo_times: dict[str, float] | None = None,
) -> str:
    content = _Content.of(rows, metas, report_seconds, demos, demo_times)
    summary, titles, env, columns = content.summary, content.titles, content.env, content.columns
    out = ["# Reproduction report", ""]
    out.append(f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} by repro.")
    if env:
        out.append("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".")
    out += [
        "",
        "Verdicts: `reproduced` (within the claim's tolerance), `deviates` (outside it; "
        "the note gives both values and the likely cause), `measured` (an absolute time or "
        "rate measured on other hardware than the paper's: recorded beside the paper's "
        "hardware, not judged; the ratios between methods are judged instead), `not-run` "
        "(cannot be measured here; the note says why), `error` (the measurement failed; the "
        "note says how).",
        "",
    ]
    out += [
        "## Summary",
        "",
        "| paper | " + " | ".join(columns) + " | claims |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    total = content.total
    for paper in sorted(summary):
        c = summary[paper]
        out.append(
            f"| [{paper}](#{paper}) | "
            + " | ".join(str(c[v]) for v in columns)
            + f" | {sum(c.values())} |"
        )
    out.append(
        "| **all** | "
        + " | ".join(f"**{total[v]}**" for v in columns)
        + f" | **{sum(total.values())}** |"
    )
    out += ["", "## Stage timings", "", "| stage | wall time |", "|---|---|"]
    out += [f"| {s} | {t} |" for s, t in content.timings]
    tables = content.demo_tables
    if tables:
        out += ["", "## Demonstrations", "", DEMOS_NOTE]
        for name, cols, drows in tables:
            out += ["", f"### {name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            out += ["| " + " | ".join(_md_cell(r.get(c, "")) for c in cols) + " |" for r in drows]
    for paper, tables in content.papers.items():
        out += ["", f"## {paper}", "", f"*{titles.get(paper, paper)}*"]
        for table, trs in tables.items():
            out += [
                "",
                f"### {table}",
                "",
                "| " + " | ".join(SHOWN) + " |",
                "|" + "---|" * len(SHOWN),
            ]
            out += ["| " + " | ".join(_md_cell(_cell(r, k)) for k in SHOWN) + " |" for r in trs]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.reproduced{background:#e3f6e3} .deviates{background:#fde8d8} .not-run{background:#eee;color:#666}
.error{background:#f9d0d0} .measured{background:#e3ecf9} nav a{margin-right:0.8em}
.note{max-width:32em}
"""


def render_html(
    rows: Sequence[dict[str, Any]],
    metas: Sequence[dict[str, Any]],
    report_seconds: float,
    demos: dict[str, list[dict[str, str]]] | None = None,
    demo_times: dict[str, float] | None = None,
) -> str:
    e = html.escape
    content = _Content.of(rows, metas, report_seconds, demos, demo_times)
    summary, titles, env, columns = content.summary, content.titles, content.env, content.columns
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>repro: reproduction report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Reproduction report</h1>",
        f"<p>Generated {e(datetime.now(UTC).isoformat(timespec='seconds'))}. "
        + (e("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items())) if env else "")
        + "</p>",
        "<nav>" + "".join(f"<a href='#{e(p)}'>{e(p)}</a>" for p in sorted(summary)) + "</nav>",
        "<h2>Summary</h2><table><tr><th>paper</th>"
        + "".join(f"<th class='{v}'>{v}</th>" for v in columns)
        + "<th>claims</th></tr>",
    ]
    for paper in sorted(summary):
        c = summary[paper]
        parts.append(
            f"<tr><td><a href='#{e(paper)}'>{e(paper)}</a></td>"
            + "".join(f"<td class='num'>{c[v]}</td>" for v in columns)
            + f"<td class='num'>{sum(c.values())}</td></tr>"
        )
    parts.append("</table><h2>Stage timings</h2><table><tr><th>stage</th><th>wall time</th></tr>")
    parts += [f"<tr><td>{e(s)}</td><td>{e(t)}</td></tr>" for s, t in content.timings]
    parts.append("</table>")
    demo_tables = content.demo_tables
    if demo_tables:
        parts.append(f"<h2 id='demonstrations'>Demonstrations</h2><p>{e(DEMOS_NOTE)}</p>")
        for name, cols, drows in demo_tables:
            parts.append(
                f"<h3>{e(name)}</h3><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols)
            )
            parts += [
                "<tr>" + "".join(f"<td>{e(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                for r in drows
            ]
            parts.append("</table>")
    for paper, tables in content.papers.items():
        parts.append(
            f"<h2 id='{e(paper)}'>{e(paper)}</h2><p><i>{e(titles.get(paper, paper))}</i></p>"
        )
        for table, trs in tables.items():
            parts.append(
                f"<h3>{e(table)}</h3><table><tr>"
                + "".join(f"<th>{k}</th>" for k in SHOWN)
                + "</tr>"
            )
            for r in trs:
                cells = []
                for k in SHOWN:
                    cls = "num" if k in ("claimed", "measured") else ("note" if k == "note" else "")
                    cls = r["verdict"] if k == "verdict" else cls
                    cells.append(f"<td class='{cls}'>{e(_cell(r, k))}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    rows: Sequence[dict[str, Any]],
    metas: Sequence[dict[str, Any]],
    out_dir: Path,
    demos: dict[str, list[dict[str, str]]] | None = None,
    demo_times: dict[str, float] | None = None,
) -> dict[str, Path]:
    """``demos``: the demonstrations' tables (:func:`read_demos`), shown in their own section;
    ``demo_times``: their stages' wall times (:func:`demo_seconds`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: r["paper"])  # stable: keeps each paper's claim order
    missing = [c for c in ("paper", "table", "row", "verdict") if rows and c not in rows[0]]
    if missing:
        raise ReproError(
            f"the results table lacks the columns {missing}.",
            f"regenerate the measurements; the columns are {', '.join(RESULT_COLUMNS)}.",
        )
    elapsed = process_seconds()  # this process so far: the report stage's wall time
    paths = {
        "csv": out_dir / "results.csv",
        "markdown": out_dir / "README.md",
        "html": out_dir / "index.html",
    }
    write_results_csv(paths["csv"], rows)
    md = render_markdown(rows, metas, elapsed, demos, demo_times)
    atomic_write_text(paths["markdown"], md)
    atomic_write_text(paths["html"], render_html(rows, metas, elapsed, demos, demo_times))
    return paths
