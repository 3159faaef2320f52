"""`repro run --resume`: a paper whose files an earlier run wrote in exactly this configuration
is reused, not measured again. The configuration is everything that changes a paper's results:
the suites, the claims selected, the data roots (and the datasets the paper reads, by their
roots' entries), the speed and accuracy settings (the weights files by size and modification
time), the paper file's content and repro's own sources. A
paper written in any other configuration, incomplete, with a claim in `error`, changed since,
or not logged to the tracking store of this run, is measured again, and the reason said."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from repro.claims import paper_path
from repro.data.roots import data_root
from repro.runner.plan import PaperPlan
from repro.runner.settings import RunSettings
from repro.runner.write import PaperRun, file_sha256, read_results
from repro.suites.accuracy.run_key import source_digest

LOGGED = ("logged", "logged after a replay", "spooled")  # spooled: replayed by `repro sync`


def _weights(weights: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for model, path in sorted(weights.items()):
        file = Path(path).expanduser()
        info = file.stat() if file.is_file() else None
        found[model] = [str(file), info.st_size, info.st_mtime_ns] if info else [str(file)]
    return found


def _datasets(plan: PaperPlan, settings: RunSettings) -> dict[str, Any]:
    """Each dataset the paper's claims read: its resolved root (--data, REPRO_DATA_*, params)
    and the root's top-level entries by name, size and modification time (a folder's own)."""
    found: dict[str, Any] = {}
    for name in sorted({c.dataset for c in plan.paper.claims if c.dataset}):
        root = data_root(name, settings.data_roots)
        folder = Path(root).expanduser() if root else None
        entries = []
        if folder is not None and folder.is_dir():
            for entry in sorted(folder.iterdir()):
                info = entry.stat()
                entries.append([entry.name, info.st_size, info.st_mtime_ns])
        found[name] = {"root": root or "", "entries": entries}
    return found


def run_config(plan: PaperPlan, settings: RunSettings) -> dict[str, Any]:
    """What changes ``plan``'s results in a run of ``settings``, as JSON keeps it."""
    suites = set(settings.suites)
    accuracy = None
    if suites & {"accuracy", "dataset"} or settings.accuracy is not None:
        chosen = settings.accuracy_settings
        accuracy = {**chosen.model_dump(mode="json"), "weights": _weights(chosen.weights)}
    paper = paper_path(plan.paper.paper, settings.papers_dir)
    config = {
        "suites": sorted(suites),
        "claims": sorted(settings.claims),
        "data_roots": dict(sorted(settings.data_roots.items())),
        "datasets": _datasets(plan, settings),
        "speed": settings.speed_settings.model_dump(mode="json") if "speed" in suites else None,
        "accuracy": accuracy,
        "paper_sha256": hashlib.sha256(paper.read_bytes()).hexdigest(),
        "source_sha256": source_digest(),
    }
    return json.loads(json.dumps(config, default=str))


def _why_not(meta: dict[str, Any], config: dict[str, Any], table: Path, uri: str | None) -> str:
    """Why the written paper cannot be reused; empty if it can."""
    if meta.get("complete") is not True:
        return "its files are from an interrupted run"
    recorded = meta.get("config")
    if not isinstance(recorded, dict):
        return "its metadata records no configuration (written before --resume existed)"
    changed = [k for k in config if recorded.get(k) != config[k]]
    if changed:
        names = {
            "data_roots": "data roots", "datasets": "dataset files",
            "paper_sha256": "the paper file", "source_sha256": "repro's source code",
        }  # fmt: skip
        return "measured with other " + ", ".join(names.get(k, k) for k in changed)
    if not table.is_file() or file_sha256(table) != meta.get("results_sha256"):
        return f"{table.name} changed since it was written"
    mlflow = meta.get("mlflow") or {}
    if uri and (mlflow.get("uri") != uri or mlflow.get("status") not in LOGGED):
        return f"not logged to MLflow at {uri}"
    return ""


def reusable(plan: PaperPlan, settings: RunSettings, config: dict[str, Any]) -> PaperRun | str:
    """The paper as written earlier in ``config``, or why it is measured again."""
    out = settings.out_dir
    key = plan.paper.paper
    if out is None:
        return "no output folder"
    meta_path, table = out / f"{key}.json", out / f"{key}.csv"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "not written yet"
    except (OSError, ValueError) as exc:
        return f"{meta_path.name} is unreadable ({type(exc).__name__})"
    why = _why_not(meta if isinstance(meta, dict) else {}, config, table, settings.tracking_uri)
    if why:
        return why
    try:
        results = read_results(table)
    except (OSError, ValueError, TypeError) as exc:
        return f"{table.name} is unreadable ({type(exc).__name__})"
    errors = sum(r.verdict == "error" for r in results)
    if errors:
        return f"{errors} of its claims ended in error"
    return PaperRun(key, results, [], meta, reused=True)
