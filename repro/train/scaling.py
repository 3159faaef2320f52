"""`repro scaling`: the same training at several worker counts, and how well it scales.

Data parallel (ddp, fsdp) keeps the batch per worker fixed (weak scaling: n workers train n
times the images per step); model parallel (pipeline, towers) keeps the global batch (strong
scaling). One worker always trains the plain single-device model: the baseline.
Efficiency at n workers = (images/s at n / n) / (images/s at the baseline / its workers),
i.e. throughput_n / (n * throughput_1) when the sweep starts at 1.

Results go to a flat CSV named after device, precision and torch version (rows of earlier
sweeps with other models or counts are kept) and to MLflow (experiment "repro/scaling").
"""

from __future__ import annotations

import csv
import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import torch

from repro.execution.train import ensure_capacity
from repro.tracking.training import log_scaling
from repro.train.config import TrainConfig, TrainResult
from repro.train.distributed import resolve, run_training, validate

DEFAULT_OUT = Path("benchmarks/results")
KEY = ("model", "parallel", "precision", "workers", "global_batch")


def device_slug(text: str) -> str:
    """A device name as a file name part (dots kept: "A100-SXM4-40GB", "cpu")."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def csv_path(out_dir: Path, device: str, precision: str, torch_version: str) -> Path:
    public = torch_version.split("+")[0]
    return out_dir / f"scaling_{device_slug(device)}_{precision}_torch{public}.csv"


def config_for(base: TrainConfig, workers: int, batch_per_worker: int) -> TrainConfig:
    data_parallel = base.parallel in ("ddp", "fsdp")
    return dataclasses.replace(
        base,
        workers=workers,
        parallel=base.parallel if workers > 1 else "none",
        batch_size=batch_per_worker * workers if data_parallel else batch_per_worker,
        run_name=None,
    )


def row_for(result: TrainResult, base: TrainConfig, workers: int) -> dict[str, Any]:
    env, cfg = result.environment, result.config
    weak = base.parallel in ("ddp", "fsdp")  # data parallel: the batch per worker is fixed
    return {
        "model": base.model,
        "parallel": base.parallel,
        "scaling": "weak" if weak else "strong",
        "workers": workers,
        "strategy_run": cfg["parallel"],
        "global_batch": cfg["batch_size"],
        "batch_per_worker": cfg["batch_size"] // workers if weak else cfg["batch_size"],
        "steps": cfg["steps"],
        "timed_steps": result.timed_steps,
        "images_per_s": round(result.images_per_s, 3),
        "step_s_median": round(result.step_s_median, 5),
        "data_s_fraction": round(result.data_s_fraction, 4),
        "device": env.get("device", ""),
        "precision": cfg["precision"],
        "torch": env.get("torch", torch.__version__),
        "ray": env.get("ray", ""),
        "backend": env.get("backend", ""),
        "threads_per_worker": env.get("threads_per_worker", ""),
        "worker_start_s": result.overhead.get("worker_start_s", ""),
        "fit_s": result.overhead.get("fit_s", ""),
        "run_name": cfg["run_name"],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def add_efficiency(rows: list[dict[str, Any]]) -> None:
    base = min(rows, key=lambda r: r["workers"])
    per_worker = base["images_per_s"] / base["workers"]
    for r in rows:
        ratio = r["images_per_s"] / r["workers"] / per_worker if per_worker else 0.0
        r["efficiency"] = round(ratio, 4)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Merge ``rows`` into ``path``: a row replaces an earlier one with the same KEY."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old: list[dict[str, Any]] = []
    if path.exists():
        with path.open(newline="") as fh:
            old = list(csv.DictReader(fh))
    new_keys = {tuple(str(r[k]) for k in KEY) for r in rows}
    kept = [r for r in old if tuple(str(r.get(k, "")) for k in KEY) not in new_keys]
    merged = kept + rows
    columns: list[str] = []
    for r in merged:
        columns += [c for c in r if c not in columns]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(merged)
    tmp.replace(path)
    return path


def run_scaling(
    base: TrainConfig,
    workers: list[int],
    batch_per_worker: int,
    out_dir: Path = DEFAULT_OUT,
    log: Any = print,
) -> tuple[list[dict[str, Any]], Path]:
    """Train ``base`` at each worker count; returns the rows and the CSV written."""
    base = resolve(base)
    counts = sorted(set(workers))
    configs = [config_for(base, n, batch_per_worker) for n in counts]
    for c in configs:
        validate(resolve(c))  # every count is possible before any runs
    if max(counts) > 0:
        ensure_capacity(configs[-1])
    rows: list[dict[str, Any]] = []
    path: Path | None = None
    for n, config in zip(counts, configs, strict=True):
        result = run_training(config)
        rows.append(row_for(result, base, n))
        add_efficiency(rows)
        env = result.environment
        path = write_csv(csv_path(out_dir, env["device"], base.precision, env["torch"]), rows)
        log(
            f"{n} worker(s): {result.images_per_s:.1f} images/s, step {result.step_s_median:.4f}"
            f" s, efficiency {rows[-1]['efficiency']:.3f} ({env['device']}, {base.precision})"
        )
    assert path is not None
    if base.tracking_uri:
        name = f"{base.model}-{base.parallel}-w{','.join(map(str, counts))}"
        params = {"model": base.model, "parallel": base.parallel, "steps": base.steps}
        params |= {"batch_per_worker": batch_per_worker, "precision": base.precision}
        log_scaling(base.tracking_uri, name, rows, params, str(path))
    return rows, path
