"""The report's charts, drawn by matplotlib's SVG backend: per paper, measured/claimed on a log
axis with each claim's tolerance band; the verdicts per paper; the deviations ranked by size;
benchmark speed, latency, scaling and energy; training curves.

Each chart is an SVG string (text kept as text, ids salted by the chart's name so several charts
inline in one page never share an id) with a ``<title>`` on every point, so hovering a point in
a browser shows its row and note. Nothing is fetched from the network."""

from __future__ import annotations

import io
import math
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from repro.claims import SHAPE_METRICS, Tolerance
from repro.files import printable
from repro.report.numbers import number

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")

VERDICT_COLOURS = {
    "reproduced": "#2e7d32",
    "deviates": "#e65100",
    "measured": "#1565c0",
    "not-run": "#9e9e9e",
    "error": "#c62828",
}
LABEL_CHARS = 58
RATIO_LIMITS = (1e-3, 1e3)  # measured/claimed beyond these is drawn at the edge, marked


@dataclass(frozen=True)
class Chart:
    name: str  # file stem, unique in one report: "paper-vgg", "summary", ...
    title: str
    svg: str  # an <svg> element, no XML declaration: fit to inline in HTML or save as a file
    caption: str


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    text = printable(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_figure(width: float, height: float, columns: int = 1) -> tuple[Any, list[Any]]:
    """A figure and its ``columns`` axes, side by side."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, no display

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, list(fig.subplots(1, columns, squeeze=False)[0])


def plain_log(axis: Any, lo: float, hi: float) -> None:
    """Log ticks written as plain numbers (0.5, 1, 2; not 5x10^-1), denser over narrow ranges,
    no labelled minor ticks. Call with the axis's limits once they are set."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(max(hi, 1e-300) / max(lo, 1e-300))
    subs = (1.0, 2.0, 5.0) if decades > 1.2 else tuple(float(k) for k in range(1, 10))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def amount(value: float) -> str:
    """A bar's value label: 4040 not 4.04e+03, 0.0123 not 1.23e-02."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def tolerance_of(text: Any) -> Tolerance:
    """A result row's tolerance column read back; text that gives no finite, non-negative bound
    (``nan``, ``-1``, ``inf``) is exact, as unknown text is."""
    try:
        tolerance = Tolerance.from_description(str(text))
    except ValueError:  # pydantic's ValidationError: a negative or NaN bound
        return Tolerance()
    bounds = [b for b in (tolerance.rel, tolerance.abs) if b is not None]
    return tolerance if all(math.isfinite(b) for b in bounds) else Tolerance()


# Characters XML 1.0 cannot hold, which a label from a hostile row could bring into the SVG.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def tip(titles: dict[str, str], artist: Any, gid: str, text: str) -> None:
    """``artist`` named ``gid``, with ``text`` as its tooltip (:func:`to_svg` adds it)."""
    artist.set_gid(gid)
    titles[gid] = "\n".join(printable(line) for line in text.split("\n"))


def to_svg(fig: Any, name: str, titles: dict[str, str]) -> str:
    """``fig`` as SVG text, with ``titles`` (gid -> tooltip) added as <title> children."""
    import matplotlib
    from matplotlib.text import Text

    buf = io.StringIO()
    for text in fig.findobj(Text):  # a label's "$" is a dollar, not TeX (bad TeX would raise)
        text.set_parse_math(False)
    settings = {"svg.fonttype": "none", "svg.hashsalt": name, "text.parse_math": False}
    with matplotlib.rc_context(settings):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    root = ET.fromstring(_XML_ILLEGAL.sub("\ufffd", buf.getvalue()))  # a label's controls
    root.set("class", "chart")
    root.set("role", "img")
    for element in root.iter():
        gid = element.get("id")
        if gid in titles:
            title = ET.Element(f"{{{SVG_NS}}}title")
            title.text = titles[gid]
            element.insert(0, title)
        elif gid and not gid.startswith(name):
            element.set("id", f"{name}-{gid}")  # figure, axes_1, ... would repeat across charts
    for element in root.iter():  # references to renamed ids (clip paths)
        for attr in ("clip-path", "{http://www.w3.org/1999/xlink}href", "href"):
            value = element.get(attr)
            if value and "#" in value and not value.split("#", 1)[1].startswith(name):
                element.set(attr, value.replace("#", f"#{name}-", 1))
    return ET.tostring(root, encoding="unicode")


# --- Claims -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimPoint:
    label: str
    ratio: float  # measured / claimed
    band: float  # tolerance half-width as a fraction of claimed
    verdict: str
    tip: str
    paper: str = ""


def claim_points(rows: Iterable[dict[str, Any]]) -> tuple[list[ClaimPoint], Counter[str]]:
    """The rows a ratio chart can show, and the others counted by why not."""
    points, left_out = [], Counter()
    for r in rows:
        if r.get("metric") in SHAPE_METRICS:
            left_out["shape claims (exact, in the table)"] += 1
            continue
        claimed, measured = number(r.get("claimed")), number(r.get("measured"))
        if measured is None:
            left_out[f"{r.get('verdict') or 'unmeasured'} claims without a value"] += 1
            continue
        if not claimed:
            left_out["claims of 0 (no ratio)"] += 1
            continue
        band = tolerance_of(r.get("tolerance", "")).band(claimed)
        tip = (
            f"{r.get('row')}\n{r.get('metric')}: measured {measured:g} vs claimed {claimed:g} "
            f"{r.get('unit', '')} (tolerance {r.get('tolerance')}) - {r.get('verdict')}"
        )
        if r.get("note"):
            tip += f"\n{r['note']}"
        points.append(
            ClaimPoint(
                shorten(r.get("row", "")),
                measured / claimed,
                band,
                r["verdict"],
                tip,
                r.get("paper", ""),
            )  # fmt: skip
        )
    return points, left_out


def _clip(ratio: float) -> tuple[float, bool]:
    lo, hi = RATIO_LIMITS
    if ratio <= lo or ratio >= hi:
        return (lo if ratio <= lo else hi), True
    return ratio, False


def _verdict_legend(ax: Any, verdicts: Iterable[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color=VERDICT_COLOURS.get(v, "#000"), label=v)
        for v in VERDICT_COLOURS
        if v in set(verdicts)
    ]
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)


TIP_ROWS = 12  # rows listed in one tooltip before "and N more"


def _rows_tip(head: str, rows: Sequence[dict[str, Any]], verdict: str) -> str:
    """A tooltip naming the rows with ``verdict`` and their notes."""
    chosen = [r for r in rows if r.get("verdict") == verdict]
    lines = [head]
    for r in chosen[:TIP_ROWS]:
        note = f": {shorten(r['note'], 160)}" if r.get("note") else ""
        lines.append(f"- {r.get('row', '')}{note}")
    if len(chosen) > TIP_ROWS:
        lines.append(f"... and {len(chosen) - TIP_ROWS} more (in the tables)")
    return "\n".join(lines)


def _verdict_strip(paper: str, rows: Sequence[dict[str, Any]], left_out: Counter[str]) -> Chart:
    """A paper with no claim a ratio can show: its verdicts as one stacked bar."""
    name = f"paper-{paper}"
    counts = Counter(r["verdict"] for r in rows)
    fig, (ax,) = new_figure(9.0, 1.25)
    left, titles = 0, {}
    for v, colour in VERDICT_COLOURS.items():
        if counts[v]:
            bar = ax.barh([0], [counts[v]], left=left, color=colour, label=f"{v} {counts[v]}")[0]
            tip(titles, bar, f"{name}-{v}", _rows_tip(f"{paper}: {counts[v]} {v}", rows, v))
            left += counts[v]
    ax.set_yticks([])
    ax.set_xlabel("claims", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    caption = f"{paper} has no numeric claim with a measured value to draw on a ratio axis: "
    caption += ", ".join(f"{n} {why}" for why, n in left_out.items()) + "."
    return Chart(name, f"{paper}: verdicts", to_svg(fig, name, titles), caption)


def paper_chart(paper: str, rows: Sequence[dict[str, Any]]) -> Chart | None:
    """Every numeric claim of ``paper`` as measured/claimed; a verdict strip when none is."""
    if not rows:
        return None
    points, left_out = claim_points(rows)
    if not points:
        return _verdict_strip(paper, rows, left_out)
    name = f"paper-{paper}"
    fig, (ax,) = new_figure(9.0, 1.3 + 0.24 * len(points))
    titles = {}
    for y, p in enumerate(points):
        if p.band:
            lo = max(1 - p.band, RATIO_LIMITS[0])
            ax.barh(y, (1 + p.band) - lo, left=lo, height=0.6, color="#d9d9d9", zorder=1)
        x, clipped = _clip(p.ratio)
        marker = ("<" if x < 1 else ">") if clipped else "o"
        dot = ax.scatter([x], [y], s=30, marker=marker, color=VERDICT_COLOURS.get(p.verdict),
                         zorder=3)  # fmt: skip
        tip(titles, dot, f"{name}-claim-{y}", p.tip + (" (off the axis)" if clipped else ""))
    ax.axvline(1.0, color="#555", linewidth=0.8, zorder=2)
    ax.set_xscale("log")
    ratios = [_clip(p.ratio)[0] for p in points] + [1 + p.band for p in points] + [1.0]
    lows = [_clip(p.ratio)[0] for p in points] + [max(1 - p.band, RATIO_LIMITS[0]) for p in points]
    ax.set_xlim(min(min(lows), 0.9) / 1.15, max(max(ratios), 1.1) * 1.15)
    plain_log(ax.xaxis, *ax.get_xlim())
    ax.set_yticks(range(len(points)), [p.label for p in points], fontsize=8)
    ax.invert_yaxis()
    ax.set_ylim(len(points) - 0.4, -0.6)
    ax.set_xlabel("measured / claimed (log scale); grey band: the claim's tolerance", fontsize=9)
    ax.grid(axis="x", which="both", color="#eee", zorder=0)
    ax.tick_params(axis="x", labelsize=8)
    _verdict_legend(ax, [p.verdict for p in points])
    caption = f"{len(points)} numeric claim(s) of {paper}; hover a point for its row and note."
    off = sum(_clip(p.ratio)[1] for p in points)
    if off:
        lo, hi = RATIO_LIMITS
        caption += f" {off} ratio(s) beyond {lo:g}..{hi:g} are drawn at the edge as triangles."
    if left_out:
        caption += " Not drawn: " + ", ".join(f"{n} {why}" for why, n in left_out.items()) + "."
    return Chart(name, f"{paper}: measured against claimed", to_svg(fig, name, titles), caption)


def summary_chart(summary: dict[str, Counter[str]], verdicts: Sequence[str]) -> Chart | None:
    if not summary:
        return None
    name = "summary"
    papers = sorted(summary)
    fig, (ax,) = new_figure(9.0, 1.4 + 0.26 * len(papers))
    left = [0] * len(papers)
    titles = {}
    for v in verdicts:
        counts = [summary[p][v] for p in papers]
        bars = ax.barh(papers, counts, left=left, color=VERDICT_COLOURS.get(v), label=v)
        for paper, bar, n in zip(papers, bars, counts, strict=True):
            if n:
                tip(titles, bar, f"{name}-{paper}-{v}", f"{paper}: {n} {v}")
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("claims", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.set_xlim(0, max(left) * 1.02 if max(left, default=0) else 1)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, ncols=len(verdicts),
              frameon=False)  # fmt: skip
    ax.grid(axis="x", color="#eee")
    ax.set_axisbelow(True)
    total = sum(sum(c.values()) for c in summary.values())
    caption = f"Verdicts of {total} claims in {len(papers)} papers."
    return Chart(name, "Verdicts per paper", to_svg(fig, name, titles), caption)


@dataclass(frozen=True)
class RatioBar:
    """One bar of a ratio chart: from 1 to ``ratio`` on a log axis."""

    label: str
    ratio: float  # where the bar ends (already clipped where the caller clips)
    tip: str
    colour: str
    text: str = ""  # printed at the bar's end


def ratio_bars(name: str, title: str, bars: Sequence[RatioBar], xlabel: str,
               caption: str) -> Chart:  # fmt: skip
    """Bars from 1 to each ratio on a plain-numbered log axis: the deviations, and the ratios
    of `repro compare`."""
    fig, (ax,) = new_figure(9.0, 1.4 + 0.26 * len(bars))
    titles = {}
    for y, b in enumerate(bars):
        bar = ax.barh(y, abs(b.ratio - 1), left=min(b.ratio, 1), height=0.6, color=b.colour)[0]
        tip(titles, bar, f"{name}-{y}", b.tip)
        if b.text:
            right = b.ratio >= 1
            ax.annotate(b.text, (b.ratio, y), xytext=(4 if right else -4, 0),
                        textcoords="offset points", ha="left" if right else "right",
                        va="center", fontsize=7)  # fmt: skip
    ax.axvline(1.0, color="#555", linewidth=0.8)
    ax.set_xscale("log")
    xs = [b.ratio for b in bars]
    ax.set_xlim(min(min(xs), 0.8) / 1.6, max(max(xs), 1.25) * 1.6)
    plain_log(ax.xaxis, *ax.get_xlim())
    ax.set_yticks(range(len(bars)), [b.label for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", which="both", color="#eee")
    ax.set_axisbelow(True)
    return Chart(name, title, to_svg(fig, name, titles), caption)


def _change(ratio: float) -> str:
    """+16%, -0.13%, x34.2: how far a measured value is from its claim."""
    pct = (ratio - 1) * 100
    if ratio >= 10:
        return f"x{ratio:.3g}"
    return f"{pct:+.0f}%" if abs(pct) >= 1 else f"{pct:+.2g}%"


def deviations_chart(rows: Sequence[dict[str, Any]]) -> Chart | None:
    deviating = [r for r in rows if r.get("verdict") == "deviates"]
    points, left_out = claim_points(deviating)
    if not points:
        return None
    ranked = sorted(points, key=lambda p: -abs(math.log(max(p.ratio, 1e-12))))
    bars = [
        RatioBar(
            shorten(f"{p.paper}: {p.label}" if p.paper else p.label),
            _clip(p.ratio)[0],
            p.tip,
            VERDICT_COLOURS["deviates"],
            _change(p.ratio),
        )  # fmt: skip
        for p in ranked
    ]
    caption = f"The {len(ranked)} numeric deviations, largest first; hover a bar for its note."
    if left_out:
        caption += " Not drawn: " + ", ".join(f"{n} {why}" for why, n in left_out.items()) + "."
    return ratio_bars("deviations", "Deviations ranked by size", bars,
                      "measured / claimed (log scale)", caption)  # fmt: skip


def claim_charts(rows: Sequence[dict[str, Any]], summary: dict[str, Counter[str]],
                 verdicts: Sequence[str]) -> list[Chart]:  # fmt: skip
    """The summary, the deviations, then one chart per paper (papers in name order)."""
    by_paper: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_paper[r["paper"]].append(r)
    charts = [summary_chart(summary, verdicts), deviations_chart(rows)]
    charts += [paper_chart(p, by_paper[p]) for p in sorted(by_paper)]
    return [c for c in charts if c is not None]
