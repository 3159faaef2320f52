"""reports/README.md: the report as Markdown, its charts as SVG files beside it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from repro.report.charts import Chart
from repro.report.content import BENCH_NOTE, DEMOS_NOTE, LEGEND, SHOWN, SPEED_NOTE, Content, cell


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


CHARTS_DIR = "charts"  # beside README.md


def _md_chart(chart: Chart) -> list[str]:
    return ["", f"![{chart.title}]({CHARTS_DIR}/{chart.name}.svg)", "", f"*{chart.caption}*"]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]


def render_markdown(content: Content) -> str:
    """The report from ``content`` (:meth:`Content.of`, computed once for both formats)."""
    summary, titles, env, columns = content.summary, content.titles, content.env, content.columns
    drawn = content.charts
    out = ["# Reproduction report", ""]
    out.append(f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} by repro.")
    out += ["", LEGEND, "", "## Summary", ""]
    total = content.total
    table = [
        [f"[{p}](#{p})", *(summary[p][v] for v in columns), sum(summary[p].values())]
        for p in sorted(summary)
    ]
    table.append(["**all**", *(f"**{total[v]}**" for v in columns), f"**{sum(total.values())}**"])
    out += _md_table(["paper", *columns, "claims"], table)
    for chart in drawn.overview:
        out += _md_chart(chart)
    if env:
        out += ["", "## Environment", "", "The measurements ran in:", ""]
        out += _md_table(["", "value"], [[k, v] for k, v in env.items()])
        if content.env_differs:
            out += ["", "Measured in another environment:", ""]
            out += [f"- {line}" for line in content.env_differs]
    out += ["", "## Stage timings", ""] + _md_table(["stage", "wall time"], content.timings)
    if drawn.bench or drawn.bench_missing:
        out += ["", "## Benchmarks", "", BENCH_NOTE]
        for chart in drawn.bench:
            out += _md_chart(chart)
        if drawn.bench_missing:
            out += ["", "Not drawn:", ""] + [f"- {line}" for line in drawn.bench_missing]
    speed = content.speed
    if speed is not None:
        out += ["", "## Speed claims by hardware", "", SPEED_NOTE, ""]
        out += [f"- {run.label}: `{run.folder}`, measured {run.finished}" for run in speed.runs]
        out += [""] + _md_table(*speed.tally()) + [""] + _md_table(*speed.grid())
    tables = content.demo_tables
    if tables or drawn.training:
        out += ["", "## Demonstrations", "", DEMOS_NOTE]
        for chart in drawn.training:
            out += _md_chart(chart)
        for name, cols, drows in tables:
            out += ["", f"### {name}", ""]
            out += _md_table(cols, [[r.get(c, "") for c in cols] for r in drows])
    if drawn.comparison is not None:
        compared = drawn.comparison
        out += ["", "## Comparison", "", f"A: `{compared.a.name}`, B: `{compared.b.name}`."]
        if compared.chart is not None:
            out += _md_chart(compared.chart)
        out += ["", "```", *compared.lines, "```"]
    for paper, tables in content.papers.items():
        out += ["", f"## {paper}", "", f"*{titles.get(paper, paper)}*"]
        if paper in drawn.papers:
            out += _md_chart(drawn.papers[paper])
        for chart in drawn.trained.get(paper, []):
            out += _md_chart(chart)
        for table, trs in tables.items():
            out += ["", f"### {table}", ""]
            out += _md_table(SHOWN, [[cell(r, k) for k in SHOWN] for r in trs])
    return "\n".join(out) + "\n"
