"""The key of a training run of the accuracy suite: everything that changes its result. Runs are
stored under ``<paper>-<recipe>-<short hash of the key>``, so a run asked for with a different
recipe, worker count, batch, epochs, seeds, evaluation limit, precision, device, data or code
trains anew in a folder of its own, and the same key resumes (or returns) the stored run. The
worker checks the data it reads against the checkpoint's facts on resumption as well
(repro.train.recipe_loop)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import repro
from repro.data import mnist

KEY_CHARS = 12  # of the key's sha256 in the run's folder name


@cache
def source_digest() -> str:
    """The sha256 of the repro package's Python sources (each file's path relative to the
    package, then its bytes, in path order): the same on a fresh clone of the same tree (no
    timestamps, no git metadata), different after any edit of the code, committed or not."""
    package = Path(repro.__file__).parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def data_fingerprint(name: str, root: str | None) -> dict[str, Any]:
    """A dataset as a run's key sees it: its name, resolved root and the root's top-level
    entries (name, size, modification time; a folder's own, not its contents'); for an
    MNIST-format set, small enough to read in a second, the content digest of each split."""
    if not root or not Path(root).expanduser().is_dir():
        return {"dataset": name, "root": root or ""}
    folder = Path(root).expanduser().resolve()
    entries = []
    for entry in sorted(folder.iterdir()):
        info = entry.stat()
        entries.append([entry.name, info.st_size, info.st_mtime_ns])
    found = {"dataset": name, "root": str(folder), "entries": entries}
    if name in mnist.SETS:
        splits = {split: mnist.load_split(folder, split, name) for split in mnist.FILES}
        found["content"] = {k: mnist.content_sha256(d.images, d.labels) for k, d in splits.items()}
    return found


def run_key(
    recipe: Mapping[str, Any],
    *,
    workers: int,
    seeds: list[int],
    epochs: float | None,
    eval_limit: int | None,
    precision: str,
    use_gpu: bool,
    roots: Mapping[str, str],
) -> dict[str, Any]:
    """Everything that changes a training run's result: the recipe (its full content: model,
    optimizer, schedule, batch size, splits, ...), the world size, seeds, epochs, evaluation
    limit, precision, device, every dataset read (:func:`data_fingerprint`) and the code
    (:func:`source_digest`)."""
    datasets = {recipe["dataset"]: roots.get(recipe["dataset"]), **roots}
    return {
        "recipe": dict(recipe),
        "workers": workers,  # the world size (0: one rank in this process, without Ray)
        "seeds": list(seeds),
        "epochs": float(epochs or recipe["epochs"]),
        "eval_limit": eval_limit,
        "precision": precision,
        "use_gpu": use_gpu,
        "data": [data_fingerprint(n, r) for n, r in sorted(datasets.items())],
        "code": source_digest(),
    }


def key_hash(key: Mapping[str, Any]) -> str:
    """A short hash of ``key`` (JSON with sorted keys): the run folder's suffix."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]
