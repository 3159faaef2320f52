"""The result rows the report and `repro compare` read, checked before anything is built from
them: a measurement CSV, a results table, a committed run's CSV or MLflow's results. A row
whose paper is not a paper key (a path such as ``x/../../tmp/f`` would name a chart outside
the report), that lacks a column, or that a cut-off write left short is a counted skip naming
the file and line; so is a file that is empty, not UTF-8 or not CSV. Nothing here raises for
what a file holds."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.claims import key_problem
from repro.files import printable

log = logging.getLogger("repro.report")

# What the report reads of every row; the other result columns may be missing (older files).
ROW_COLUMNS = ("paper", "claim_id", "table", "row", "metric", "unit", "claimed", "measured",
               "verdict")  # fmt: skip


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # the bytes surrogateescape kept of a damaged file
CURVE_SUFFIX = ".curve.csv"  # an accuracy run's training curves beside its results


def result_files(folder: Path) -> list[Path]:
    """The result CSVs of a measurement folder (each <paper>.csv; not the curves)."""
    return sorted(p for p in Path(folder).glob("*.csv") if not p.name.endswith(CURVE_SUFFIX))


def paper_key_problem(value: Any) -> str | None:
    """Why ``value`` is not a paper key (repro.claims.KEY_RULE), or None."""
    return key_problem(value) or None


def row_problem(row: Any, columns: Iterable[str] = ROW_COLUMNS) -> str | None:
    """Why ``row`` cannot be a result row of the report, or None."""
    if not isinstance(row, Mapping):
        return f"the row is {type(row).__name__}, not a table row"
    missing = [c for c in columns if not isinstance(row.get(c, ""), str) or c not in row]
    if missing:
        return f"the row lacks the column(s) {', '.join(missing)} (or holds no text in them)"
    return paper_key_problem(row["paper"])


def skipped(where: str, why: str) -> str:
    """Log that what is at ``where`` (a file, a line) is left out, and why; returns the line."""
    line = printable(f"{where}: {why}")
    log.warning("skipped %s", line)
    return line


@dataclass
class RowsRead:
    """Rows read from one source, and each one left out (``where: why``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        self.skipped.append(skipped(where, why))

    def extend(self, other: RowsRead) -> None:
        self.rows += other.rows
        self.skipped += other.skipped


def checked_rows(rows: Iterable[Any], where: str) -> RowsRead:
    """``rows`` (MLflow's results, a caller's list) with the bad ones skipped; ``where`` names
    the source in each skip ("MLflow at URI")."""
    out = RowsRead()
    for i, row in enumerate(rows, 1):
        problem = row_problem(row)
        if problem is None:
            out.rows.append(dict(row))
        else:
            claim = row.get("claim_id") if isinstance(row, Mapping) else None
            out.skip(f"{where}, row {i}" + (f" ({printable(claim)})" if claim else ""), problem)
    return out


def read_csv(path: Path, columns: Iterable[str] = ()) -> tuple[RowsRead, list[str]]:
    """The rows of one CSV file repro wrote, and its header. ``columns``: those every row must
    hold, a result row's paper key checked when ``paper`` is among them. The file is skipped
    whole (an empty header) when it cannot be read, is empty, is not CSV or its header is not
    UTF-8 or lacks ``columns``; a row cut short or holding bytes that are not UTF-8, or the last
    row of a file that ends mid-row (repro ends every row with a newline), is skipped by its
    line."""
    out, columns = RowsRead(), tuple(columns)
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")  # bad bytes: found by row
    except OSError as exc:
        out.skip(str(path), f"cannot be read ({exc.strerror or exc})")
        return out, []
    if not text.strip():
        out.skip(str(path), "the file is empty (a write cut off before its first row?)")
        return out, []
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        out.skip(str(path), f"not a CSV file ({exc})")
        return out, []
    if _NOT_UTF8.search(",".join(header)):
        out.skip(str(path), "line 1: not UTF-8 text (the file is damaged, or is not a CSV file)")
        return out, []
    missing = [c for c in columns if c not in header]
    if missing:
        out.skip(str(path), f"the header lacks the column(s) {', '.join(missing)}")
        return out, []
    records: list[tuple[int, dict[Any, Any]]] = []
    ends_cut = not text.endswith(("\n", "\r"))
    try:
        records += ((reader.line_num, row) for row in reader)
    except csv.Error as exc:  # strict: a quote left open (the file ends in it) or misplaced
        line = (records[-1][0] if records else 1) + 1
        out.skip(f"{path}, line {line}", f"not CSV from here on ({exc}; a write cut off in a "
                                         "quoted field?); the rows before it are kept")  # fmt: skip
        ends_cut = False  # the rows read before it ended whole
    for i, (line, row) in enumerate(records, 1):
        where = f"{path}, line {line}"
        if any(_NOT_UTF8.search(v) for v in row.values() if isinstance(v, str)):
            out.skip(where, "not UTF-8 text (bytes of this row are damaged)")
        elif None in row or None in row.values():
            out.skip(where, f"the row has {_fields(row)} fields where the header has "
                            f"{len(header)} (a row cut short, or a stray comma)")  # fmt: skip
        elif ends_cut and i == len(records):
            out.skip(where, "the file ends in the middle of this row (a write cut off)")
        elif (problem := row_problem(row, columns) if "paper" in columns else None) is not None:
            out.skip(where, problem)
        else:
            out.rows.append(row)
    return out, header


def _fields(row: dict[Any, Any]) -> int:
    extra = row.get(None) or []
    return sum(v is not None for k, v in row.items() if k is not None) + len(extra)


def skipped_line(left_out: list[str]) -> str:
    """What the commands add to "wrote ..." when results were left out (each skip is logged
    as it is met, and listed in the report)."""
    if not left_out:
        return ""
    return (
        f"; INCOMPLETE: {len(left_out)} file(s) or row(s) of the results left out, named above "
        "and in the report"
    )
