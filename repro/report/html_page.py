"""reports/index.html: the report as one self-contained page, its charts inline SVG."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from repro.files import printable
from repro.report.charts import Chart
from repro.report.compare import Comparison
from repro.report.content import (
    BENCH_NOTE,
    DEMOS_NOTE,
    LEGEND,
    SHOWN,
    SKIPPED_NOTE,
    SPEED_NOTE,
    Content,
    cell,
)

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.reproduced{background:#e3f6e3} .deviates{background:#fde8d8} .not-run{background:#eee;color:#666}
.error{background:#f9d0d0} .measured{background:#e3ecf9} nav a{margin-right:0.8em}
.note{max-width:32em} figure{margin:1em 0 1.5em} svg.chart{max-width:100%;height:auto}
figcaption{font-size:0.85em;color:#555;max-width:60em} nav{line-height:1.8}
table.env td:first-child{font-weight:600}
"""


def prose(text: str) -> str:
    """The notes are written for Markdown: escape, then `code` spans become <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    e = html.escape
    head = "<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>"
    body = ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
    return "<table>" + head + "".join(body) + "</table>"


def comparison_section(compared: Comparison) -> str:
    e = html.escape
    out = [
        "<h2 id='comparison'>Comparison</h2>",
        f"<p>A: <code>{e(compared.a.name)}</code>, B: <code>{e(compared.b.name)}</code>.</p>",
    ]
    if compared.chart is not None:
        out.append(_html_chart(compared.chart))
    out.append("<pre>" + e("\n".join(compared.lines)) + "</pre>")
    return "\n".join(out)


def comparison_page(compared: Comparison) -> str:
    """`repro compare --html`: the comparison section as a page of its own."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>repro compare</title>"
        f"<style>{_CSS}</style></head><body>{comparison_section(compared)}</body></html>"
    )


def _html_chart(chart: Chart) -> str:
    e = html.escape
    return (
        f"<figure id='chart-{e(chart.name)}' aria-label='{e(chart.title)}'>{chart.svg}"
        f"<figcaption><b>{e(chart.title)}.</b> {e(chart.caption)}</figcaption></figure>"
    )


def render_html(content: Content) -> str:
    """The report from ``content`` (:meth:`Content.of`, computed once for both formats)."""
    e = html.escape
    summary, titles, env, columns = content.summary, content.titles, content.env, content.columns
    drawn = content.charts
    sections = ["summary"] + (["environment"] if env else []) + ["timings"]
    sections += ["benchmarks"] if drawn.bench or drawn.bench_missing else []
    sections += ["speed"] if content.speed is not None else []
    sections += ["demonstrations"] if content.demo_tables or drawn.training else []
    sections += ["comparison"] if drawn.comparison is not None else []
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>repro: reproduction report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Reproduction report</h1>",
        f"<p>Generated {e(datetime.now(UTC).isoformat(timespec='seconds'))}.</p>",
        f"<p>{prose(LEGEND)}</p>",
        "<nav>" + " ".join(f"<a href='#{s}'>{s}</a>" for s in sections) + " | "
        + " ".join(f"<a href='#{e(p)}'>{e(p)}</a>" for p in sorted(summary)) + "</nav>",
        "<h2 id='summary'>Summary</h2><table><tr><th>paper</th>"
        + "".join(f"<th class='{v}'>{v}</th>" for v in columns)
        + "<th>claims</th></tr>",
    ]  # fmt: skip
    for paper in sorted(summary):
        c = summary[paper]
        parts.append(
            f"<tr><td><a href='#{e(paper)}'>{e(paper)}</a></td>"
            + "".join(f"<td class='num'>{c[v]}</td>" for v in columns)
            + f"<td class='num'>{sum(c.values())}</td></tr>"
        )
    total = content.total
    parts.append(
        "<tr><th>all</th>" + "".join(f"<th class='num'>{total[v]}</th>" for v in columns)
        + f"<th class='num'>{sum(total.values())}</th></tr></table>"
    )  # fmt: skip
    if content.skipped:
        parts.append(f"<p>{prose(SKIPPED_NOTE)}</p><ul>")
        parts += [f"<li>{e(printable(line))}</li>" for line in content.skipped]
        parts.append("</ul>")
    parts += [_html_chart(c) for c in drawn.overview]
    if env:
        parts.append("<h2 id='environment'>Environment</h2><table class='env'>")
        parts += [f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in env.items()]
        parts.append("</table>")
        if content.env_differs:
            parts.append("<p>Measured in another environment:</p><ul>")
            parts += [f"<li>{e(line)}</li>" for line in content.env_differs]
            parts.append("</ul>")
    parts.append(
        "<h2 id='timings'>Stage timings</h2><table><tr><th>stage</th><th>wall time</th></tr>"
    )
    parts += [f"<tr><td>{e(s)}</td><td>{e(t)}</td></tr>" for s, t in content.timings]
    parts.append("</table>")
    if drawn.bench or drawn.bench_missing:
        parts.append(f"<h2 id='benchmarks'>Benchmarks</h2><p>{prose(BENCH_NOTE)}</p>")
        parts += [_html_chart(c) for c in drawn.bench]
        if drawn.bench_missing:
            parts.append("<p>Not drawn:</p><ul>")
            parts += [f"<li>{e(line)}</li>" for line in drawn.bench_missing]
            parts.append("</ul>")
    speed = content.speed
    if speed is not None:
        parts.append(f"<h2 id='speed'>Speed claims by hardware</h2><p>{prose(SPEED_NOTE)}</p><ul>")
        parts += [
            f"<li>{e(run.label)}: <code>{e(run.folder)}</code>, measured {e(run.finished)}</li>"
            for run in speed.runs
        ]
        parts += ["</ul>", _html_table(*speed.tally()), _html_table(*speed.grid())]
    demo_tables = content.demo_tables
    if demo_tables or drawn.training:
        parts.append(f"<h2 id='demonstrations'>Demonstrations</h2><p>{prose(DEMOS_NOTE)}</p>")
        parts += [_html_chart(c) for c in drawn.training]
        for name, cols, drows in demo_tables:
            parts.append(f"<h3>{e(name)}</h3>")
            parts.append(_html_table(cols, [[r.get(c, "") for c in cols] for r in drows]))
    if drawn.comparison is not None:
        parts.append(comparison_section(drawn.comparison))
    for paper, tables in content.papers.items():
        parts.append(
            f"<h2 id='{e(paper)}'>{e(paper)}</h2><p><i>{e(titles.get(paper, paper))}</i></p>"
        )
        if paper in drawn.papers:
            parts.append(_html_chart(drawn.papers[paper]))
        parts += [_html_chart(c) for c in drawn.trained.get(paper, [])]
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
                    cells.append(f"<td class='{e(cls)}'>{e(cell(r, k))}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
