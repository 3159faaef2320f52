"""Where each result was measured, and the committed results of every hardware that has them
folded into the report: the speed suite's (benchmarks/speed_claims/<environment>/<paper>.csv,
as `repro run --suite speed --out` writes them) and the accuracy suite's
(benchmarks/accuracy_claims/...): one row per claim and per hardware."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.report.numbers import measured_text
from repro.report.rows import ROW_COLUMNS, read_csv, result_files
from repro.verdicts import VERDICTS

SPEED_DIR = Path("benchmarks/speed_claims")
ACCURACY_DIR = Path("benchmarks/accuracy_claims")


def hardware_label(env: dict[str, Any]) -> str:
    """'cpu (AMD EPYC), fp32, torch 2.14.1+cu130' from an environment (repro.environment)."""
    device = env.get("device") or "unknown device"
    gpu = env.get("gpu")
    chip = gpu if gpu and gpu != "none" and device != "cpu" else env.get("cpu")
    where = f"{device} ({chip})" if chip else device
    return f"{where}, {env.get('precision') or '?'}, torch {env.get('torch') or '?'}"


@dataclass
class HardwareRun:
    """One folder of committed results: the hardware, when, and its rows of one kind."""

    folder: str  # benchmarks/<kind>_claims/<environment>
    label: str
    finished: str  # the newest paper's finish time in the folder
    rows: list[dict[str, Any]] = field(default_factory=list)


def read_runs(root: Path | None = SPEED_DIR, kind: str = "speed") -> list[HardwareRun]:
    """Every hardware folder under ``root``, with its claims of ``kind`` (each paper's
    <paper>.csv beside its <paper>.json; unreadable files skipped)."""
    if root is None or not Path(root).is_dir():
        return []
    runs = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        rows: list[dict[str, Any]] = []
        env: dict[str, Any] = {}
        finished = []
        for path in result_files(folder):
            rows += [r for r in read_csv(path, ROW_COLUMNS)[0].rows if r.get("kind") == kind]
            try:
                meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict):
                continue
            found = meta.get("environment")
            env = env or (found if isinstance(found, dict) else {})
            finished.append(str(meta.get("finished", "")))
        if rows:
            named = env.get("cpu") or env.get("gpu")  # older files name only the device type
            label = hardware_label(env) if named else folder.name
            runs.append(HardwareRun(str(folder), label, max(finished, default=""), rows))
    return runs


def fold_runs(
    rows: Sequence[dict[str, Any]], metas: Sequence[dict[str, Any]], runs: Sequence[HardwareRun]
) -> list[dict[str, Any]]:
    """``rows`` with a ``hardware`` column (where the measure stage ran, from its metadata), and
    each hardware's committed rows in place of the rows of the claims it measured."""
    envs = (m.get("environment") for m in metas)
    env = next((e for e in envs if isinstance(e, dict) and e), None)
    here = hardware_label(env) if env else "this machine"
    papers = {r["paper"] for r in rows}
    kept = {(r["paper"], r["claim_id"]) for run in runs for r in run.rows if r["paper"] in papers}
    out = [
        dict(r, hardware=r.get("hardware") or here)
        for r in rows
        if (r["paper"], r.get("claim_id")) not in kept
    ]
    for run in runs:
        out += [dict(r, hardware=run.label) for r in run.rows if r["paper"] in papers]
    return out


@dataclass
class SpeedTable:
    """The speed claims side by side, one column per hardware."""

    hardware: list[str]  # column order
    runs: list[HardwareRun]
    claims: list[tuple[str, str, str, dict[str, dict[str, Any]]]]  # paper, row, claimed, by hw
    counts: dict[str, Counter[str]]  # hardware -> verdict counts

    def grid(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows): each speed claim, its value and verdict on each hardware."""

        def shown(r: dict[str, Any] | None) -> str:
            if r is None:
                return "-"
            if r["verdict"] == "not-run" or not r.get("measured"):
                return r["verdict"]
            return f"{measured_text(r['measured'], r['claimed'])} {r['unit']} ({r['verdict']})"

        body = [[p, row, claimed, *(shown(by.get(h)) for h in self.hardware)]
                for p, row, claimed, by in self.claims]  # fmt: skip
        return ["paper", "claim", "claimed", *self.hardware], body

    def tally(self) -> tuple[list[str], list[list[Any]]]:
        """(header, rows): the speed verdicts counted per hardware."""
        verdicts = [v for v in VERDICTS if any(c[v] for c in self.counts.values())]
        body = [[v, *(self.counts[h][v] for h in self.hardware)] for v in verdicts]
        return ["speed verdicts", *self.hardware], body


def speed_table(rows: Sequence[dict[str, Any]], runs: Sequence[HardwareRun]) -> SpeedTable | None:
    labels = [run.label for run in runs]
    if not labels:
        return None
    by_claim: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r.get("kind") == "speed" and r.get("hardware") in labels:
            key = (r["paper"], r["claim_id"])
            by_claim.setdefault(key, {})[r["hardware"]] = r
            first.setdefault(key, r)
    if not by_claim:
        return None
    counts = {h: Counter(c[h]["verdict"] for c in by_claim.values() if h in c) for h in labels}
    claims = [(k[0], first[k]["row"], first[k]["claimed"], v) for k, v in by_claim.items()]
    return SpeedTable(labels, list(runs), claims, counts)
