"""The seeded fuzz (benchmarks/fuzz.py) at a small size: every family's mutants end in a named
error, a counted skip or an accepted input; none in a traceback or an error that does not name
the file. `make faults` runs it at 1,000 inputs per family into benchmarks/results/fuzz.csv."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import fuzz
from benchmarks.fuzz_mutators import _yaml_hostile


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, fuzz.Family]]:
    yield {f.name: f for f in fuzz.families(tmp_path_factory.mktemp("fuzz"))}


FAMILIES = [
    "paper_yaml", "params_yaml", "voc_xml", "coco_instances", "coco_results", "voc_detections",
    "images", "mnist_idx", "sun397_lists", "imagenet_labels", "weights", "measurement_csv",
    "spool_entry",
]  # fmt: skip


def test_every_family_is_fuzzed(families: dict[str, fuzz.Family]) -> None:
    assert sorted(families) == sorted(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_mutants_end_named_skipped_or_accepted(families: dict[str, fuzz.Family], name: str) -> None:
    counts = fuzz.fuzz_family(families[name], 40, seed=1)
    assert counts["traceback"] == 0 and counts["unnamed"] == 0, counts
    assert counts["named"] + counts["skip"] > 0  # the mutants did reach the reader


@pytest.mark.parametrize("name", ["voc_xml", "coco_instances", "mnist_idx", "sun397_lists"])
def test_the_valid_files_beside_a_bad_one_are_still_checked(
    families: dict[str, fuzz.Family], name: str
) -> None:
    fam = families[name]
    try:
        outcome, out = fuzz.run_one(fam, random.Random(0).randbytes(300))
    finally:
        fam.target.write_bytes(fam.pristine)
    assert outcome == "skip", out
    assert "problem" in out and "manifest:" in out  # the pass finished and wrote its manifest


def test_a_weights_pickle_that_runs_code_is_refused(
    families: dict[str, fuzz.Family], tmp_path: Path
) -> None:
    fam = families["weights"]
    marker = tmp_path / "ran"
    code = next(m for m in fuzz._weights_mutators(marker) if m.__name__ == "code")
    try:
        for seed in range(4):  # both forms: torch.save and a bare pickle
            outcome, out = fuzz.run_one(fam, code(random.Random(seed), fam.pristine))
            assert (
                outcome == "named" and "refuses to unpickle code" in out or "not a readable" in out
            )
    finally:
        fam.target.write_bytes(fam.pristine)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["paper_yaml", "params_yaml"])
def test_yaml_aliases_nesting_and_repeated_keys_are_named(
    families: dict[str, fuzz.Family], name: str
) -> None:
    """An alias bomb, an alias naming itself, nesting past the parser's depth and a key given
    twice: each a named error, none a hang, a traceback or a key silently dropped."""
    fam = families[name]
    try:
        for seed in range(12):
            outcome, out = fuzz.run_one(fam, _yaml_hostile(random.Random(seed), fam.pristine))
            assert outcome == "named", out
    finally:
        fam.target.write_bytes(fam.pristine)
