"""What could not be logged to MLflow, kept on disk until the store answers again.

A spooled entry is one JSON file: the tracking URI, the call (:func:`repro.tracking.log_paper`,
or a training run's :class:`repro.tracking.training.TrainingRun`) and its arguments, session id
or run name included, so a replay is idempotent (a paper or run cut off half-way is finished,
not logged twice). Entries are replayed by the next `repro run`
against the same store once it answers, or by `repro sync`. Files are written atomically; an
entry is deleted only after its replay succeeded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import tracking
from repro.errors import ReproError
from repro.files import atomic_write_json
from repro.tracking.client import first_line, spool_dir
from repro.tracking.provenance import command_line
from repro.tracking.training import replay_run
from repro.verdicts import GroupOutcome


def save_paper(
    uri: str,
    paper: str,
    groups: list[dict[str, Any]],
    environment: dict[str, Any],
    session: str,
    reason: str,
    directory: Path | str | None = None,
    started: float | None = None,
) -> Path:
    """Spool one paper's log_paper call, with the command and start of the reproduction that
    made it (a replay by `repro sync` names them on the parent run); returns the file written."""
    entry = {
        "call": "log_paper",
        "uri": uri,
        "paper": paper,
        "session": session,
        "groups": groups,
        "environment": environment,
        "reason": reason,
        "spooled_at": time.time(),
        "started": started,
        "command": command_line(),
    }
    path = spool_dir(directory) / f"{time.time_ns()}-{paper}-{session}.json"
    atomic_write_json(path, entry, default=str)
    return path


def pending(directory: Path | str | None = None, uri: str | None = None) -> list[Path]:
    """Spooled entries, oldest first; with ``uri``, only those meant for that store."""
    folder = spool_dir(directory)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if uri is None:
        return found
    return [p for p in found if _read(p).get("uri") == uri]


def _read(path: Path) -> dict[str, Any]:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReproError(
            f"spooled MLflow entry {path} cannot be read ({exc}).",
            "delete the file if it is not needed; nothing else in the spool is affected.",
        ) from None
    if not isinstance(entry, dict) or entry.get("call") not in ("log_paper", "train_run"):
        raise ReproError(
            f"spooled MLflow entry {path} is not a repro spool file (call: "
            f"{entry.get('call') if isinstance(entry, dict) else type(entry).__name__}).",
            "delete it or move it out of the spool folder.",
        )
    return entry


@dataclass
class Replay:
    replayed: list[str] = field(default_factory=list)  # "paper (session)" of each entry logged
    remaining: list[Path] = field(default_factory=list)
    error: str = ""  # why the first remaining entry could not be logged


def replay(
    uri: str | None = None, directory: Path | str | None = None, only_uri: str | None = None
) -> Replay:
    """Log every pending entry (to ``uri`` when given, else to the store it was meant for),
    oldest first, deleting each once logged. Stops at the first failure: the store is most
    likely still away, and later entries keep their order."""
    outcome = Replay()
    entries = pending(directory, only_uri)
    for i, path in enumerate(entries):
        entry = _read(path)
        target = uri or entry["uri"]
        try:
            if entry["call"] == "train_run":
                replay_run(target, entry)
            else:
                tracking.log_paper(
                    target, entry["paper"],
                    [GroupOutcome.from_record(g) for g in entry["groups"]],
                    entry["environment"], entry["session"],
                    entry.get("started"), entry.get("command"),
                )  # fmt: skip
        except Exception as exc:  # the store's fault, whatever MLflow raises for it
            outcome.error = first_line(exc)
            outcome.remaining = entries[i:]
            return outcome
        path.unlink(missing_ok=True)
        what = entry.get("paper") or f"training run {entry.get('run_name')}"
        outcome.replayed.append(f"{what} ({entry.get('session', entry.get('experiment'))})")
    return outcome
