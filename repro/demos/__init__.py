"""Small end-to-end demonstrations on real data, sized for a CPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro.files import atomic_write_json, write_csv


def write_outputs(
    out_dir: Path, name: str, doc: dict[str, Any], columns: Sequence[str], rows: list[dict]
) -> tuple[Path, Path]:
    """A demo's ``<out_dir>/<name>.json`` (``doc``) and ``<name>.csv`` (``rows``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / f"{name}.json", out_dir / f"{name}.csv"
    atomic_write_json(json_path, doc, indent=2, default=str)
    write_csv(csv_path, columns, rows)
    return json_path, csv_path
