"""Charts of the benchmark files (benchmarks/results/*.csv) and of training curves: images/s per
model, precision and device; latency p50/p90/p99; scaling efficiency against workers; energy per
image where NVML measured it; loss and error per epoch of the demonstrations."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.ticker import FuncFormatter, MaxNLocator

from repro.report.charts import Chart, amount, new_figure, plain_log, shorten, tip, to_svg
from repro.report.numbers import number
from repro.report.rows import CURVE_SUFFIX, paper_key_problem, skipped

LOG_ABOVE = 20  # values spanning more than this factor get a log axis, narrower ranges a linear one


def value_axis(ax: Any, values: Sequence[float], what: str) -> None:
    """A readable x axis for positive values: log only when they span more than LOG_ABOVE,
    plain numbers (no 10^x, no crowded minor labels) either way, the scale named in the label."""
    lo, hi = min(values), max(values)
    if hi / lo > LOG_ABOVE:
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.3, hi * 2.0)  # room for the value labels
        plain_log(ax.xaxis, *ax.get_xlim())
        what += " (log scale)"
    else:
        ax.set_xlim(0, hi * 1.15)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_xlabel(what, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)


SERIES_COLOURS = ("#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457", "#5d4037")


def read_benchmarks(folder: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(bench rows with status ok, scaling rows) from a benchmarks/results folder; each row
    gains ``source``, the file it came from. Unreadable files are left out, not fatal."""
    bench: list[dict[str, str]] = []
    scaling: list[dict[str, str]] = []
    folder = Path(folder)
    if not folder.is_dir():
        return bench, scaling
    for path in sorted(folder.glob("*.csv")):
        try:
            with path.open(newline="") as fh:
                rows = [dict(r, source=path.name) for r in csv.DictReader(fh)]
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        if path.name.startswith("bench_"):
            bench += [r for r in rows if r.get("status") == "ok"]
        elif path.name.startswith("scaling_"):
            scaling += rows
    return bench, scaling


def _device(row: dict[str, str]) -> str:
    """'cpu (AMD EPYC, 2 cores, 2 threads)' -> 'AMD EPYC'; 'cuda:0 (NVIDIA H100 ...)' -> the GPU."""
    text = row.get("device", "") or row.get("device_type", "")
    if "(" in text:
        text = text.split("(", 1)[1].rstrip(")").split(",")[0]
    return text.strip() or "unknown device"


def _series(row: dict[str, str]) -> str:
    parallel = row.get("parallel") or "none"
    workers = f", {parallel} x{row.get('workers')}" if parallel not in ("", "none") else ""
    return f"{_device(row)} {row.get('precision', '')}{workers}"


def _config(row: dict[str, str]) -> str:
    batch = f", batch {row['batch_size']}" if row.get("batch_size") else ""
    return f"{row.get('model')} ({row.get('mode')}{batch})"


def _grouped_bars(
    name: str, title: str, rows: Sequence[dict[str, str]], column: str, xlabel: str, caption: str
) -> Chart | None:
    values: dict[tuple[str, str], float] = {}
    for r in rows:
        v = number(r.get(column))
        if v is not None and v > 0:
            values[(_config(r), _series(r))] = v  # the latest row of a configuration wins
    if not values:
        return None
    categories = sorted({c for c, _ in values})
    series = sorted({s for _, s in values})
    height = 0.8 / len(series)
    fig, (ax,) = new_figure(9.0, 1.3 + 0.22 * len(categories) * max(1, len(series)))
    titles = {}
    for i, s in enumerate(series):
        ys, xs = [], []
        for j, c in enumerate(categories):
            if (c, s) in values:
                ys.append(j - 0.4 + height * (i + 0.5))
                xs.append(values[(c, s)])
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        bars = ax.barh(ys, xs, height=height * 0.9, color=colour, label=shorten(s, 60))
        for k, (bar, x) in enumerate(zip(bars, xs, strict=True)):
            tip(titles, bar, f"{name}-{i}-{k}", f"{s}: {x:.4g}")
            ax.annotate(amount(x), (x, ys[k]), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=7)  # fmt: skip
    value_axis(ax, list(values.values()), xlabel)
    ax.set_yticks(range(len(categories)), categories, fontsize=8)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", which="both", color="#eee")
    ax.set_axisbelow(True)
    return Chart(name, title, to_svg(fig, name, titles), caption)


def latency_chart(rows: Sequence[dict[str, str]]) -> Chart | None:
    points = []
    for r in rows:
        p = [number(r.get(f"latency_{q}_ms")) for q in ("p50", "p90", "p99")]
        if all(v is not None and v > 0 for v in p):
            points.append((f"{_config(r)}, {_series(r)}", p))
    if not points:
        return None
    name = "bench-latency"
    fig, (ax,) = new_figure(9.0, 1.3 + 0.3 * len(points))
    titles = {}
    for y, (label, (p50, p90, p99)) in enumerate(points):
        ax.plot([p50, p99], [y, y], color="#999", linewidth=1, zorder=1)
        for q, v, marker in (("p50", p50, "o"), ("p90", p90, "s"), ("p99", p99, "D")):
            dot = ax.scatter([v], [y], marker=marker, s=28, color="#1565c0", zorder=2,
                             label=q if y == 0 else None)  # fmt: skip
            tip(titles, dot, f"{name}-{y}-{q}", f"{label}: {q} {v:.4g} ms per batch")
    value_axis(ax, [v for _, p in points for v in p], "latency per batch, ms")
    ax.set_yticks(range(len(points)), [shorten(label, 70) for label, _ in points], fontsize=8)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", which="both", color="#eee")
    caption = f"Per-batch latency percentiles of {len(points)} benchmark configuration(s)."
    return Chart(name, "Latency p50 / p90 / p99", to_svg(fig, name, titles), caption)


def scaling_chart(rows: Sequence[dict[str, str]]) -> Chart | None:
    lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        workers, eff = number(r.get("workers")), number(r.get("efficiency"))
        if workers is not None and eff is not None:
            label = f"{r.get('model')} {r.get('scaling', '')} scaling, {r.get('device', '')}"
            lines[label].append((int(workers), eff))
    if not lines:
        return None
    name = "bench-scaling"
    fig, (ax,) = new_figure(7.0, 3.6)
    titles = {}
    workers_seen: set[int] = set()
    for i, (label, pts) in enumerate(sorted(lines.items())):
        pts.sort()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        workers_seen.update(xs)
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        ax.plot(xs, ys, color=colour, label=label)
        for k, (x, y) in enumerate(pts):
            dot = ax.scatter([x], [y], s=30, color=colour, zorder=3)
            tip(titles, dot, f"{name}-{i}-{k}", f"{label}: {x} worker(s), efficiency {y:.3g}")
    ax.axhline(1.0, color="#555", linewidth=0.8, linestyle="--")
    ax.set_xticks(sorted(workers_seen))
    ax.set_ylim(0, max(1.1, max(y for pts in lines.values() for _, y in pts) * 1.1))
    ax.set_xlabel("workers", fontsize=9)
    ax.set_ylabel("scaling efficiency", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8)
    ax.grid(color="#eee")
    caption = (
        "Images/s per worker relative to one worker (1.0 = linear scaling), from the scaling "
        "sweeps in benchmarks/results/."
    )
    return Chart(name, "Scaling efficiency", to_svg(fig, name, titles), caption)


def bench_charts(bench: Sequence[dict[str, str]], scaling: Sequence[dict[str, str]]) -> tuple[
    list[Chart], list[str]
]:  # fmt: skip
    """The benchmark charts, and a line for each that has nothing to draw (and why)."""
    charts, missing = [], []
    speed = _grouped_bars(
        "bench-speed", "Images/s per model, device and precision", bench, "images_per_s",
        "images/s", f"Throughput of {len(bench)} benchmark row(s) with status ok.",
    )  # fmt: skip
    energy = _grouped_bars(
        "bench-energy", "Energy per image", bench, "energy_j_per_image", "joules per image",
        "NVML's energy counter over the timed window, divided by the images processed.",
    )  # fmt: skip
    for chart, what in (
        (speed, "images/s: no benchmark row with status ok in benchmarks/results/bench_*.csv"),
        (latency_chart(bench), "latency: no row with p50, p90 and p99"),
        (scaling_chart(scaling), "scaling: no benchmarks/results/scaling_*.csv with efficiency"),
        (energy, "energy per image: no row where NVML measured energy (CPU runs have none)"),
    ):
        if chart is None:
            missing.append(what)
        else:
            charts.append(chart)
    return charts, missing


# --- Training curves --------------------------------------------------------------------------


def training_curves(demos: Path) -> dict[str, dict[str, list[tuple[str, list[float]]]]]:
    """demo -> metric -> [(run label, value per epoch)], from the demos' JSON files; a file
    that is not a demo's results (cut off, another shape) is left out and logged."""
    out: dict[str, dict[str, list[tuple[str, list[float]]]]] = {}
    for path in sorted(Path(demos).glob("*.json")):
        try:
            curves = _demo_curves(json.loads(path.read_text(encoding="utf-8")))
        except OSError:
            continue
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            skipped(str(path), f"not a demonstration's results ({type(exc).__name__}: {exc})")
            continue
        if curves:
            out[path.stem] = dict(curves)
    return out


def _demo_curves(data: Any) -> dict[str, list[tuple[str, list[float]]]]:
    curves: dict[str, list[tuple[str, list[float]]]] = defaultdict(list)
    if isinstance(data.get("loss_per_epoch"), list):
        curves["loss"].append(("training", [float(v) for v in data["loss_per_epoch"]]))
    per_epoch = data.get("per_epoch") if isinstance(data.get("per_epoch"), list) else []
    maps = [e.get("voc07_map") for e in per_epoch if isinstance(e, dict)]
    if maps and all(isinstance(v, int | float) for v in maps):  # the detection demo
        curves["voc07_map"].append(("test split", [float(v) for v in maps]))
    for run in data.get("runs") or []:
        seeds = ((run.get("result") or {}).get("seeds")) or []
        for i, seed in enumerate(seeds):
            history = seed.get("history") or []
            workers = run.get("workers") or 0
            where = f"{workers} Ray worker(s)" if workers else "in-process"
            label = f"{where}, seed {seed.get('seed', i)}"
            for metric in ("loss", "top1_error"):
                values = [h[metric] for h in history if isinstance(h.get(metric), int | float)]
                if values:
                    curves[metric].append((label, [float(v) for v in values]))
    return curves


def training_chart(
    demo: str, curves: dict[str, list[tuple[str, list[float]]]], caption: str = ""
) -> Chart:
    name = f"training-{demo}"
    metrics = sorted(curves)
    fig, axes = new_figure(4.5 * len(metrics), 3.2, len(metrics))
    titles = {}
    for ax, metric in zip(axes, metrics, strict=True):
        for i, (label, values) in enumerate(curves[metric]):
            epochs = list(range(1, len(values) + 1))
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            (line,) = ax.plot(epochs, values, color=colour, linewidth=1.2, label=label)
            text = f"{metric} {values[0]:.4g} at epoch 1, {values[-1]:.4g} at {len(values)}"
            tip(titles, line, f"{name}-{metric}-{i}", f"{label}: {text}")
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel(metric.replace("top1_error", "top-1 error, %"), fontsize=9)
        values_all = [v for _, vs in curves[metric] for v in vs]
        if metric == "loss" and min(values_all) > 0 and max(values_all) / min(values_all) > 5:
            ax.set_yscale("log")
            plain_log(ax.yaxis, min(values_all), max(values_all))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(color="#eee")
        if len(curves[metric]) <= 8:
            ax.legend(fontsize=7)
    runs = max(len(v) for v in curves.values())
    caption = caption or f"Per-epoch training curves of the {demo} demonstration ({runs} run(s))."
    return Chart(name, f"Training: {demo}", to_svg(fig, name, titles), caption)


def training_charts(demos: Path) -> list[Chart]:
    return [training_chart(d, c) for d, c in training_curves(demos).items()]


def committed_curve_charts(folders: Sequence[tuple[str, str]]) -> dict[str, list[Chart]]:
    """paper -> a chart of each committed accuracy run's curves (<paper>.curve.csv in each
    (folder, hardware label)): training loss and test top-1 error per epoch, a line per recipe
    and seed. Unreadable files are left out."""
    out: dict[str, list[Chart]] = defaultdict(list)
    for folder, label in folders:
        for path in sorted(Path(folder).glob(f"*{CURVE_SUFFIX}")):
            try:
                with path.open(newline="", encoding="utf-8") as fh:
                    rows = list(csv.DictReader(fh))
                curves: dict[str, list[tuple[str, list[float]]]] = defaultdict(list)
                runs = sorted({(r["recipe"], r["seed"]) for r in rows})
                for recipe, seed in runs:
                    mine = [r for r in rows if (r["recipe"], r["seed"]) == (recipe, seed)]
                    for metric in ("loss", "top1_error"):
                        values = [float(r[metric]) for r in mine if r.get(metric)]
                        if values:
                            curves[metric].append((f"{recipe}, seed {seed}", values))
            except (OSError, UnicodeDecodeError, csv.Error, KeyError, ValueError):
                continue
            paper = path.name.removesuffix(CURVE_SUFFIX)
            problem = paper_key_problem(paper)
            if problem:
                skipped(str(path), f"{problem}; its training curves are not drawn")
            elif curves:
                caption = (
                    f"Per-epoch training curves of {paper}'s recipes on {label}: the committed "
                    f"run in {path.parent} (top-1 error on the test split after each epoch)."
                )
                out[paper].append(training_chart(f"{paper}-{Path(folder).name}", curves, caption))
    return dict(out)
