"""How the report prints numbers: a measured value to the precision its claim is stated in, plus
one digit; the demonstrations' values to 4 significant digits. results.csv keeps them whole."""

from __future__ import annotations

import math
from typing import Any

DEMO_DIGITS = 4


def number(text: Any) -> float | None:
    """A finite float from a cell, or None (text, empty, inf, nan)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def decimals(text: str) -> int:
    """Decimal places a number is written with: '1.10' -> 2, '60000000' -> 0, '2e-3' -> 3."""
    text = str(text).strip().lower()
    mantissa, _, exponent = text.partition("e")
    places = len(mantissa.partition(".")[2])
    return max(0, places - int(exponent or 0))


def significant(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, in plain notation where that is short."""
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 15 or magnitude < -5:
        return f"{value:.{digits - 1}e}"
    places = max(0, digits - 1 - magnitude)
    rounded = round(value, places)
    if places == 0:
        return str(int(rounded))
    return f"{rounded:.{places}f}".rstrip("0").rstrip(".")


def measured_text(measured: str, claimed: str) -> str:
    """The measured value as the report prints it beside its claim."""
    value = number(measured)
    if value is None:
        return str(measured)
    if value == int(value) and "." not in measured and "e" not in measured.lower():
        return measured  # a count stays a count
    if number(claimed) is None:
        return significant(value, DEMO_DIGITS)
    places = decimals(claimed) + 1
    text = f"{value:.{places}f}"
    if float(text) == 0 and value != 0:  # a claim of 0 measured at 1e-7: keep what is there
        return significant(value, 2)
    return text


def demo_text(value: str) -> str:
    """A demonstration's table cell: numbers to 4 significant digits, other text as it is."""
    parsed = number(value)
    if parsed is None or (parsed == int(parsed) and "." not in str(value)):
        return str(value)
    return significant(parsed, DEMO_DIGITS)
