"""reports/README.md: the report as Markdown, its charts as SVG files beside it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from repro.files import printable
from repro.report.charts import Chart
from repro.report.content import (
    BENCH_NOTE,
    DEMOS_NOTE,
    LEGEND,
    SHOWN,
    SKIPPED_NOTE,
    SPEED_NOTE,
    Content,
    cell,
)  # fmt: skip

_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_ENTITY = re.compile(r"&(?=#?\w+;)")


def _md_text(value: Any) -> str:
    """Text from the results or a paper file as Markdown shows it, never as markup: no raw HTML
    (``<`` and an entity's ``&`` escaped, so ``<script>`` or ``onerror=`` stay text), one line,
    control characters as visible escapes."""
    text = printable(_LINE_BREAKS.sub(" ", str(value)))
    return _ENTITY.sub("&amp;", text).replace("<", "&lt;")


def _md_cell(value: Any) -> str:
    return _md_text(value).replace("\\", "\\\\").replace("|", "\\|")


def _md_alt(text: str) -> str:
    return _md_text(text).replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _md_code(text: str) -> str:
    """``text`` as a code span (shown as it is, so only a backtick could end it early)."""
    return "`" + printable(_LINE_BREAKS.sub(" ", text)).replace("`", "'") + "`"


def _md_fence(lines: Sequence[str]) -> list[str]:
    """``lines`` as a code block whose fence no backtick run in them can close."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *(printable(line) for line in lines), fence]


CHARTS_DIR = "charts"  # beside README.md


def _md_chart(chart: Chart) -> list[str]:
    image = f"![{_md_alt(chart.title)}]({CHARTS_DIR}/{chart.name}.svg)"
    return ["", image, "", f"*{_md_text(chart.caption)}*"]


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
    if content.skipped:
        out += ["", SKIPPED_NOTE, ""] + [f"- {_md_text(line)}" for line in content.skipped]
    for chart in drawn.overview:
        out += _md_chart(chart)
    if env:
        out += ["", "## Environment", "", "The measurements ran in:", ""]
        out += _md_table(["", "value"], [[k, v] for k, v in env.items()])
        if content.env_differs:
            out += ["", "Measured in another environment:", ""]
            out += [f"- {_md_text(line)}" for line in content.env_differs]
    out += ["", "## Stage timings", ""] + _md_table(["stage", "wall time"], content.timings)
    if drawn.bench or drawn.bench_missing:
        out += ["", "## Benchmarks", "", BENCH_NOTE]
        for chart in drawn.bench:
            out += _md_chart(chart)
        if drawn.bench_missing:
            out += ["", "Not drawn:", ""] + [f"- {_md_text(line)}" for line in drawn.bench_missing]
    speed = content.speed
    if speed is not None:
        out += ["", "## Speed claims by hardware", "", SPEED_NOTE, ""]
        out += [
            f"- {_md_text(run.label)}: {_md_code(run.folder)}, measured {_md_text(run.finished)}"
            for run in speed.runs
        ]
        out += [""] + _md_table(*speed.tally()) + [""] + _md_table(*speed.grid())
    tables = content.demo_tables
    if tables or drawn.training:
        out += ["", "## Demonstrations", "", DEMOS_NOTE]
        for chart in drawn.training:
            out += _md_chart(chart)
        for name, cols, drows in tables:
            out += ["", f"### {_md_text(name)}", ""]
            out += _md_table(cols, [[r.get(c, "") for c in cols] for r in drows])
    if drawn.comparison is not None:
        compared = drawn.comparison
        names = f"A: {_md_code(compared.a.name)}, B: {_md_code(compared.b.name)}."
        out += ["", "## Comparison", "", names]
        if compared.chart is not None:
            out += _md_chart(compared.chart)
        out += ["", *_md_fence(compared.lines)]
    for paper, tables in content.papers.items():
        out += ["", f"## {paper}", "", f"*{_md_text(titles.get(paper, paper))}*"]
        if paper in drawn.papers:
            out += _md_chart(drawn.papers[paper])
        for chart in drawn.trained.get(paper, []):
            out += _md_chart(chart)
        for table, trs in tables.items():
            out += ["", f"### {_md_text(table)}", ""]
            out += _md_table(SHOWN, [[cell(r, k) for k in SHOWN] for r in trs])
    return "\n".join(out) + "\n"
