"""How the report prints numbers (repro.report.numbers): the claim's precision plus one digit."""

from __future__ import annotations

import re

import pytest

from repro.report.content import Content
from repro.report.html_page import render_html
from repro.report.markdown import render_markdown
from repro.report.numbers import decimals, demo_text, measured_text, significant
from repro.verdicts import RESULT_COLUMNS


@pytest.mark.parametrize(
    ("measured", "claimed", "shown"),
    [("1.13526", "1.1", "1.14"), ("6.99855", "5", "7.0"), ("0.086957", "0.1", "0.09"),
     ("61100000", "60000000", "61100000"), ("0.841955978394003", "", "0.842"),
     ("55x55x96", "55x55x96", "55x55x96"), ("", "3", ""), ("1e-09", "0", "1.0e-09"),
     ("138357544", "138", "138357544"), ("27.999999", "28.07", "28.000")],
)  # fmt: skip
def test_measured_values_carry_one_digit_more_than_the_claim(measured, claimed, shown) -> None:
    assert measured_text(measured, claimed) == shown


@pytest.mark.parametrize(("text", "places"), [("1.10", 2), ("60000000", 0), ("2e-3", 3), ("5", 0)])
def test_decimals(text: str, places: int) -> None:
    assert decimals(text) == places


def test_demo_cells_get_four_significant_digits() -> None:
    assert demo_text("0.841955978394003") == "0.842"
    assert demo_text("1234.5678") == "1235" and demo_text("12") == "12"
    assert demo_text("voc07") == "voc07" and significant(0.000123456, 4) == "0.0001235"


def test_no_value_in_the_report_has_more_digits_than_it_should() -> None:
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(paper="p", table="T", row="r", metric="m", claimed="1.1",
               measured="1.13526417", verdict="deviates")  # fmt: skip
    demos = {"digits": [{"metric": "test_error", "value": "0.841955978394003"}]}
    content = Content.of([row], [], 1.0, demos, None)
    for page in (render_markdown(content), render_html(content)):
        assert "1.14" in page and "0.842" in page
        assert not re.search(r"\d\.\d{6,}", page)
