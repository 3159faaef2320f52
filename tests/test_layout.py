"""The house: modules stay small, the README's layout and the
import-linter layers name the same parts, and every suite has the registry's interface."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

from repro.cli import build_parser
from repro.suites import Suite, get_suite, suite_names

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
    assert isinstance(suite, Suite)
    assert type(pickle.loads(pickle.dumps(suite))) is type(suite)  # Ray ships it with a group
    assert suite.name == name and suite.placement in ("tasks", "exclusive", "driver")
    assert name in suite.unselected([]) and "suite" in suite.unselected([])
    assert suite.groups([], None) == []  # type: ignore[arg-type]  # nothing to measure, no group


def test_cli_suite_choices_are_the_registry() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    (suite_flag,) = [a for a in run._actions if "--suite" in a.option_strings]
    assert list(suite_flag.choices) == suite_names() == ["analytic", "speed", "accuracy", "dataset"]


def test_the_cli_parses_without_torch_ray_or_mlflow() -> None:
    """`repro --help` and `repro papers` stay quick: heavy imports wait for the work."""
    code = (
        "import sys, repro.cli; repro.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_import_circle_between_files_or_folders() -> None:
    """Every import (function level and `if TYPE_CHECKING:` ones too): no circle between two
    modules, nor between two parts of any package of repro/ (repro.methods's files and folders,
    repro.methods.rcnn's files, ...)."""
    graph = grimp.build_graph("repro", exclude_type_checking_imports=False)
    modules = sorted(graph.modules)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in modules}
    graphs = [(modules, edges)]
    for package in sorted(m for m in modules if graph.find_children(m)):
        depth = package.count(".") + 2

        def part(module: str, depth: int = depth) -> str:
            return ".".join(module.split(".")[:depth])

        inside = [m for m in modules if m.startswith(package + ".")]
        part_edges: dict[str, set[str]] = {}
        for m in inside:
            for t in edges[m]:
                if t.startswith(package + ".") and part(m) != part(t):
                    part_edges.setdefault(part(m), set()).add(part(t))
        graphs.append((sorted({part(m) for m in inside}), part_edges))
    circles = [
        c for nodes, arrows in graphs for c in _strongly_connected(nodes, arrows) if len(c) > 1
    ]
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


# Files other branches of issue 25 rewrite: removed by the train/suites/settings branches (the
# coordinator empties this after the merge).
def test_few_imports_inside_functions() -> None:
    """Imports belong at the top of a module; one inside a function keeps a heavy library off a
    light path (the CLI's parse, the Ray and MLflow entry points), and those stay few."""
    inside = []
    for path in sorted((ROOT / "repro").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        inside.append(f"{name}:{sub.lineno}")
    assert 0 < len(set(inside)) <= 80, len(set(inside))


def test_backward_only_in_train_and_bench() -> None:
    """Gradients are taken by the trainer (repro.train) and the benchmark's step (repro.bench)."""
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in sorted((ROOT / "repro").rglob("*.py"))
        if not str(p.relative_to(ROOT)).startswith(("repro/train/", "repro/bench/"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if ".backward(" in line
    ]
    assert not found, found
