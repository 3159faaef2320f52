"""The judging vocabulary every suite shares: a claim's result row, its columns and verdicts,
how a measured value is compared with the claim, and what one measured group returns.

A leaf: it imports the claims' schema and nothing that measures, so every suite, the runner and
the report import it and it imports none of them back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from repro.claims import SHAPE_METRICS, Claim, ModelRef, Paper
from repro.files import write_csv

# `measured`: an absolute time or rate measured on other hardware than the paper's, recorded
# beside the paper's hardware and not judged (the speed suite judges ratios instead).
VERDICTS = ("reproduced", "deviates", "measured", "not-run", "error")
CORE_VERDICTS = ("reproduced", "deviates", "not-run", "error")  # always shown in summaries
SEVERITY = ("error", "deviates", "measured", "reproduced", "not-run")  # worst first


@dataclass
class Result:
    paper: str
    claim_id: str
    table: str
    row: str
    metric: str
    unit: str
    claimed: str
    measured: str
    verdict: str
    note: str
    kind: str
    model: str
    layer: str
    tolerance: str
    dataset: str
    source: str
    seconds: float = 0.0
    hardware: str = ""  # where it was measured (repro.report.hardware fills it in the report)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


RESULT_COLUMNS = [f.name for f in fields(Result)]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return (
            "x".join(_fmt(v) for v in value)
            if all(not isinstance(v, list) for v in value)
            else "; ".join(_fmt(v) for v in value)
        )
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def result_for(claim: Claim, paper: str, measured: Any, verdict: str, note: str) -> Result:
    return Result(
        paper=paper,
        claim_id=claim.id,
        table=claim.table,
        row=claim.row,
        metric=claim.metric,
        unit=claim.unit,
        claimed=_fmt(claim.value),
        measured=_fmt(measured),
        verdict=verdict,
        note=note,
        kind=claim.kind,
        model=claim.model.key() if claim.model else "",
        layer=claim.layer_text,
        tolerance=claim.tolerance.describe(),
        dataset=claim.dataset or "",
        source=f"{claim.source.cited} / {claim.source.section}",
    )


def judge(claim: Claim, measured: float | list[Any]) -> tuple[str, str]:
    """Compare a measured value (already in the claim's unit) with the claim."""
    if claim.metric in SHAPE_METRICS:
        if list(measured) == list(claim.value):  # type: ignore[arg-type]
            return "reproduced", ""
        return "deviates", _deviation_note(claim, f"shape {_fmt(measured)} vs {_fmt(claim.value)}")
    assert isinstance(claim.value, (int, float))
    m, v = float(measured), float(claim.value)  # type: ignore[arg-type]
    diff = abs(m - v)
    tol = claim.tolerance
    if tol.exact:
        ok = math.isclose(m, v, rel_tol=1e-9, abs_tol=1e-12)
    else:
        ok = (tol.rel is not None and diff <= tol.rel * abs(v) + 1e-12) or (
            tol.abs is not None and diff <= tol.abs + 1e-12
        )
    if ok:
        return "reproduced", ""
    rel = f" ({(m - v) / v:+.1%})" if v else ""
    return "deviates", _deviation_note(claim, f"measured {_fmt(m)} vs claimed {_fmt(v)}{rel}")


def worst(verdicts: Iterable[str]) -> str:
    """The most severe of ``verdicts`` (a group's verdict); `not-run` for none."""
    found = set(verdicts)
    return next((v for v in SEVERITY if v in found), "not-run")


def _deviation_note(claim: Claim, what: str) -> str:
    return f"{what}. {claim.note}".strip() if claim.note else what


def in_unit(claim: Claim, raw: float | list[Any]) -> float | list[Any]:
    if isinstance(raw, list):
        return raw
    value = raw / claim.scale
    return round(value, 6) if isinstance(value, float) else value


@dataclass
class GroupOutcome:
    """The results of one measured model: what one Ray task returns and one MLflow run holds."""

    model_key: str
    model: str
    kwargs: dict[str, Any]
    input_size: list[int]
    summary: dict[str, float]
    results: list[Result]
    seconds: float = 0.0
    paper: str = ""
    started: float = 0.0  # epoch seconds: when the measurement began and ended (MLflow's times)
    ended: float = 0.0
    curve: list[dict[str, Any]] = field(default_factory=list)  # training: a row per seed, epoch

    def record(self) -> dict[str, Any]:
        """As JSON keeps it (the MLflow spool): the results as rows."""
        out = asdict(self)
        out["rows"] = out.pop("results")
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GroupOutcome:
        rest = {k: v for k, v in record.items() if k != "rows"}
        return cls(**rest, results=[Result(**row) for row in record["rows"]])


def failed_group(paper: str, ref: ModelRef, claims: list[Claim], note: str) -> GroupOutcome:
    rows = [result_for(c, paper, None, "error", note) for c in claims]
    size = list(ref.input_size or [])
    return GroupOutcome(ref.key(), ref.name, ref.kwargs, size, {}, rows, paper=paper)


def order_results(paper: Paper, results: Iterable[Result]) -> list[Result]:
    """Results in the order the claims appear in the paper file."""
    index = {c.id: i for i, c in enumerate(paper.claims)}
    return sorted(results, key=lambda r: index.get(r.claim_id, len(index)))


def write_results_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """The flat results table (RESULT_COLUMNS), written atomically."""
    write_csv(path, RESULT_COLUMNS, rows)
