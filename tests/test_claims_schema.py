"""The claims registry: every paper file validates, and bad files fail with named errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from repro import config
from repro.claims import ANALYTIC_METRICS, list_papers, load_paper, load_paper_file
from repro.errors import ClaimFileError, ReproError
from repro.models import get_model_spec

from .conftest import SEEDS

PAPERS = list_papers()


def test_there_are_papers() -> None:
    assert len(PAPERS) >= 20


@pytest.mark.parametrize("key", PAPERS)
def test_paper_file_validates(key: str) -> None:
    paper = load_paper(key)
    assert paper.paper == key
    assert paper.claims, f"{key} has no claims"
    for claim in paper.claims:
        if claim.kind == "analytic":
            assert claim.metric in ANALYTIC_METRICS
            assert claim.model is not None
            get_model_spec(claim.model.name)  # raises for an unregistered model
            if claim.relative_to is not None:
                get_model_spec(claim.relative_to.name)


@pytest.mark.parametrize("key", PAPERS)
def test_sources_name_real_seeds(key: str) -> None:
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds not present")
    seeds = {p.name for p in SEEDS.iterdir()}
    for claim in load_paper(key).claims:
        for source in (claim.source, *claim.also):
            if source.document:  # a published source outside the seeds (fashion_mnist.yaml)
                continue
            assert source.seed in seeds, f"{key}/{claim.id}: unknown seed {source.seed}"
        assert claim.source.seed not in {a.seed for a in claim.also}, f"{key}/{claim.id}"


def test_params_yaml_lists_every_paper(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert sorted(params["papers"]) == PAPERS


def test_params_yaml_names_every_dataset(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    used = {c.dataset for k in PAPERS for c in load_paper(k).claims if c.dataset}
    assert used <= set(params["data"]), sorted(used - set(params["data"]))


def _write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD_ENTRY = (
    "  - {id: x, table: T1, row: A, metric: params, unit: M, value: 1, kind: analytic,\n"
    "     tolerance: exact, source: {seed: s, section: s}, model: vgg_a}\n"
)
HEAD = "paper: bad\ntitle: t\nauthors: a\nyear: 2000\nclaims:\n"


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    p = _write(tmp_path, HEAD + "  - {id: x, table: [unclosed\n")
    with pytest.raises(ClaimFileError) as err:
        load_paper_file(p)
    assert str(p) in err.value.paragraph()
    assert "<unicode string>" not in err.value.paragraph()


@pytest.mark.parametrize("source", ["paper", "params"])
def test_yaml_syntax_error_shows_line_and_caret(tmp_path: Path, source: str) -> None:
    """File, line and column first, then the offending line and a caret under the column, each
    on its own line, as PyYAML's problem mark gives them."""
    text = "paper: x\nclaims:\n  - table: T1\n   row: a\n"  # line 4 is indented wrongly
    p = tmp_path / ("x.yaml" if source == "paper" else "params.yaml")
    p.write_text(text)
    with pytest.raises(ReproError) as err:
        load_paper_file(p) if source == "paper" else config.load_settings(p)
    lines = err.value.paragraph().splitlines()
    assert lines[0].startswith(f"error: {p}, line 4, column 4: ")
    offending, caret = lines[1], lines[2]
    assert offending.endswith("   row: a")
    column = offending.index("   row: a") + 3  # the caret stands under the "r" of row
    assert caret.index("^") == column and caret.strip(" |") == "^"
    assert lines[3].startswith("Fix: ")


def test_bad_field_names_entry_and_field(tmp_path: Path) -> None:
    entry = GOOD_ENTRY.replace("kind: analytic", "kind: analytical")
    p = _write(tmp_path, HEAD + GOOD_ENTRY.replace("id: x", "id: ok") + entry)
    with pytest.raises(ClaimFileError) as err:
        load_paper_file(p)
    text = err.value.paragraph()
    assert "claims[1]" in text and "(x)" in text and "field kind" in text
    assert "Fix:" in text


def test_missing_field_and_unknown_unit(tmp_path: Path) -> None:
    entry = GOOD_ENTRY.replace("unit: M, ", "unit: megas, ").replace("row: A, ", "")
    with pytest.raises(ClaimFileError) as err:
        load_paper_file(_write(tmp_path, HEAD + entry))
    text = err.value.paragraph()
    assert "field row" in text and "field unit" in text


def test_analytic_claim_needs_known_metric_and_model(tmp_path: Path) -> None:
    entry = GOOD_ENTRY.replace("metric: params", "metric: top5_error")
    with pytest.raises(ClaimFileError, match="not computed by the analytic suite"):
        load_paper_file(_write(tmp_path, HEAD + entry))
    entry = GOOD_ENTRY.replace(", model: vgg_a", "")
    with pytest.raises(ClaimFileError, match="needs `model`"):
        load_paper_file(_write(tmp_path, HEAD + entry))


def test_duplicate_ids_and_paper_key(tmp_path: Path) -> None:
    with pytest.raises(ClaimFileError, match="appears twice"):
        load_paper_file(_write(tmp_path, HEAD + GOOD_ENTRY + GOOD_ENTRY))
    with pytest.raises(ClaimFileError, match="differs from the file name"):
        load_paper_file(_write(tmp_path, HEAD + GOOD_ENTRY, name="other.yaml"))


def test_unknown_paper_lists_known(tmp_path: Path) -> None:
    with pytest.raises(ClaimFileError, match="no paper 'nope'"):
        load_paper("nope")
