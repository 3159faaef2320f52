"""The per-seed table in repro/papers/README.md (found, encoded, excused, neither) against the
claims that cite each seed and the README's own "Not encoded" entries."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from repro.claims import list_papers, load_paper

README = Path(__file__).resolve().parents[1] / "repro" / "papers" / "README.md"
SEED_IDS = ("000", "001", "002", "003", "004")


def table() -> dict[str, tuple[int, int, int, int]]:
    rows = re.findall(r"^\| (00[0-4]) \([^)]*\) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$",
                      README.read_text(), re.M)  # fmt: skip
    return {seed: tuple(int(n) for n in numbers) for seed, *numbers in rows}


def encoded() -> Counter[str]:
    counts: Counter[str] = Counter()
    for key in list_papers():
        for claim in load_paper(key).claims:
            counts.update({s.seed[:3] for s in (claim.source, *claim.also)})
    return counts


def excused_entries(text: str) -> list[str]:
    """The bullets of every "Not encoded:" list in the coverage part, continuation lines joined."""
    entries: list[str] = []
    inside, current = False, None
    for line in text[text.index("# Coverage") :].splitlines():
        if line.startswith(("#", "Expected", "Encoded", "Speed claims")):
            inside = False
        if line.startswith("Not encoded"):
            inside, current = True, None
            continue
        if inside and line.startswith("- "):
            entries.append(line)
            current = len(entries) - 1
        elif inside and line.startswith("  ") and current is not None:
            entries[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return entries


def excused() -> Counter[str]:
    counts: Counter[str] = Counter()
    for entry in excused_entries(README.read_text()):
        counts.update(set(re.findall(r"\b(00[0-4])\b", entry)))
    return counts


def test_the_table_lists_every_seed() -> None:
    assert sorted(table()) == list(SEED_IDS)


def test_encoded_and_excused_match_the_files() -> None:
    enc, exc = encoded(), excused()
    for seed, (found, encoded_n, excused_n, neither) in table().items():
        assert encoded_n == enc[seed], f"seed {seed}: the YAML files cite it {enc[seed]} times"
        assert excused_n == exc[seed], f"seed {seed}: {exc[seed]} exclusions name it"
        assert found == encoded_n + excused_n + neither, f"seed {seed}: the row does not add up"
        assert neither == 0, f"seed {seed}: {neither} numbers neither encoded nor excused"


def test_excused_entries_are_parsed_from_every_list() -> None:
    entries = excused_entries(README.read_text())
    assert len(entries) > 80
    assert any("LRN constants" in e for e in entries)  # a classification list
    assert any("lambda_coord" in e for e in entries)  # a detection list
    assert not any(e.startswith("- `") and "deviates" in e for e in entries)
