"""The house: modules stay small, the README's layout and the
import-linter layers name the same parts, and every suite has the registry's interface."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from repro.suites import get_suite, suite_names

ROOT = Path(__file__).resolve().parents[1]


def test_no_module_over_500_lines() -> None:
    files = [p for d in ("repro", "pipelines", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    long = {
        str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, long


def test_readme_layout_and_layers_name_the_same_parts() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    layered = [n.strip() for row in layers["layers"] for n in row.split("|")]
    parts = sorted(
        p.stem if p.is_file() else p.name
        for p in (ROOT / "repro").iterdir()
        if (p.suffix == ".py" and not p.stem.startswith("_"))
        or (p.is_dir() and (p / "__init__.py").exists())
    )
    parts.remove("papers") if "papers" in parts else None
    assert sorted(layered) == parts  # every part of repro/ is in a layer, and only those
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout") : readme.index("## Adding a paper")]
    rows = [line for line in table.splitlines() if line.startswith("| `repro/")]
    order = []
    for name in layered:
        shown = f"`repro/{name}/`" if (ROOT / "repro" / name).is_dir() else f"`repro/{name}.py`"
        row = next((i for i, r in enumerate(rows) if shown in r.split("|")[1]), None)
        assert row is not None, f"{shown} is not in the README's layout table"
        order.append(row)
    assert order == sorted(order)  # the table runs in the contract's order


@pytest.mark.parametrize("name", suite_names())
def test_suite_has_the_registry_interface(name: str) -> None:
    suite = get_suite(name)
    assert suite.name == name and suite.placement in ("tasks", "exclusive", "driver")
    for part in ("not_run_reason", "group", "measure", "failed", "unselected", "check"):
        assert callable(getattr(suite, part)), part
    assert name in suite.unselected([]) or "suite" in suite.unselected([])
    assert suite.group([], None) == []  # nothing to measure, no group


def test_cli_suite_choices_are_the_registry() -> None:
    from repro.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    (suite_flag,) = [a for a in run._actions if "--suite" in a.option_strings]
    assert list(suite_flag.choices) == suite_names() == ["analytic", "speed", "accuracy", "dataset"]


def test_the_cli_parses_without_torch_ray_or_mlflow() -> None:
    """`repro --help` and `repro papers` stay quick: heavy imports wait for the work."""
    import subprocess

    code = (
        "import sys, repro.cli; repro.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_import_circle_between_files_or_folders() -> None:
    """Every runtime import (function level too; `if TYPE_CHECKING:` aside), as import-linter
    reads them: no circle between two modules, nor between two folders of repro/."""
    import grimp

    graph = grimp.build_graph("repro", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)

    def folder(module: str) -> str:
        return ".".join(module.split(".")[:2])

    edges = {m: graph.find_modules_directly_imported_by(m) for m in modules}
    folder_edges: dict[str, set[str]] = {}
    for m, targets in edges.items():
        for t in targets:
            if folder(m) != folder(t):
                folder_edges.setdefault(folder(m), set()).add(folder(t))
    for nodes, arrows in ((modules, edges), (sorted({folder(m) for m in modules}), folder_edges)):
        circles = [c for c in _strongly_connected(nodes, arrows) if len(c) > 1]
        assert not circles, circles


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in nodes:
        if v not in index:
            visit(v)
    return out
