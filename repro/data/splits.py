"""Named splits of a verified dataset ("train+val"), shared by the statistics and the anchors."""

from __future__ import annotations

from repro.data.verify_report import VerifyReport
from repro.errors import DataError


def named_splits(report: VerifyReport, text: str, fix: str) -> list[str]:
    """The splits of ``text`` ("a+b" or one split); DataError naming those the dataset lacks."""
    wanted = [s.strip() for s in text.split("+") if s.strip()]
    missing = [s for s in wanted if s not in report.splits]
    if missing:
        raise DataError(
            f"split(s) {', '.join(missing)} are not in {report.root}; it has "
            f"{', '.join(sorted(report.splits)) or 'none'}.",
            fix,
        )
    return wanted
