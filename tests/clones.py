"""A copy of the repository, as a fresh clone would be, with a small pipeline: for DVC tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TINY_DEMOS = (
    "demos:\n  digits_workers: [0]\n  digits_seeds: 1\n  digits_epochs: 1\n"
    "  detection_epochs: 1\n  detection_images: 32\n"
)


def small_clone(repo: Path, work: Path, papers: list[str]) -> dict[str, str]:
    """Copy the tracked and untracked-but-not-ignored files of ``repo`` (never reproduced:
    no reports/, no dvc.lock) to ``work``, keep only ``papers`` and tiny demos in params.yaml,
    and `git init` it (DVC needs git). Returns the environment to run dvc in."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=repo, capture_output=True, text=True
    )
    for f in listed.stdout.split():
        if f.startswith("reports/") or f == "dvc.lock" or not (repo / f).exists():
            continue
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / f, work / f)
    params = (work / "params.yaml").read_text()
    start = params.index("papers:")
    end = params.index("\n\n", start)
    params = (
        params[:start] + "papers:\n" + "".join(f"  - {p}\n" for p in papers)[:-1] + params[end:]
    )
    start = params.index("demos:")
    end = params.index("\n\n", start) if "\n\n" in params[start:] else len(params)
    (work / "params.yaml").write_text(params[:start] + TINY_DEMOS + params[end:])
    home = work.parent / f"{work.name}-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home)}
    subprocess.run(["git", "init", "-q"], cwd=work, check=True, env=env)
    return env


def dvc() -> str:
    return str(Path(sys.executable).parent / "dvc")
