"""What could not be logged to MLflow, kept on disk until the store answers again.

A spooled entry is one JSON file (:func:`repro.tracking.client.save_entry`): the call, the
tracking URI, the call's arguments, the reason and when. The calls (:data:`KINDS`): a paper's
:func:`repro.tracking.log_paper`, a training run's :class:`repro.tracking.training.TrainingRun`,
a `repro bench` (its parent run and the rows it could not log) and a `repro report` (the paths
of its files, which stay on disk). Each carries its session id, run name or key, so a replay is
idempotent (what was cut off half-way is finished, not logged twice). Entries are replayed by
the next `repro run` against the same store once it answers, or by `repro sync`. Files are
written atomically; an entry is deleted only after its replay succeeded.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import tracking
from repro.errors import ReproError
from repro.tracking.client import first_line, save_entry, spool_dir
from repro.tracking.provenance import command_line
from repro.tracking.report import replay_report
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
    fields = {
        "paper": paper,
        "session": session,
        "groups": groups,
        "environment": environment,
        "started": started,
        "command": command_line(),
    }
    return save_entry("log_paper", uri, reason, fields, f"{paper}-{session}", None, directory)


def pending(directory: Path | str | None = None, uri: str | None = None) -> list[Path]:
    """Spooled entries, oldest first; with ``uri``, only those meant for that store."""
    folder = spool_dir(directory)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    return [p for p in found if uri is None or _read(p).get("uri") == uri]


def _read(path: Path) -> dict[str, Any]:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReproError(
            f"spooled MLflow entry {path} cannot be read ({exc}).",
            "delete the file if it is not needed; nothing else in the spool is affected.",
        ) from None
    if not isinstance(entry, dict) or entry.get("call") not in KINDS:
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
    kinds: Counter[str] = field(default_factory=Counter)  # call -> entries logged

    def summary(self) -> str:
        """What was replayed, by kind: "2 paper log(s), 1 report(s)"."""
        return ", ".join(f"{n} {KINDS[k][0]}(s)" for k, n in self.kinds.items()) or "nothing"


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
            KINDS[entry["call"]][1](target, entry)
        except Exception as exc:  # the store's fault, whatever MLflow raises for it
            outcome.error = first_line(exc)
            outcome.remaining = entries[i:]
            return outcome
        path.unlink(missing_ok=True)
        outcome.kinds[entry["call"]] += 1
        outcome.replayed.append(_describe(entry))
    return outcome


def _replay_paper(uri: str, entry: dict[str, Any]) -> None:
    groups = [GroupOutcome.from_record(g) for g in entry["groups"]]
    tracking.log_paper(
        uri, entry["paper"], groups, entry["environment"], entry["session"],
        entry.get("started"), entry.get("command"),
    )  # fmt: skip


# call -> what `repro sync` says it replayed, and how its entry is logged (each idempotent: a
# replay cut off and run again logs once)
KINDS: dict[str, tuple[str, Callable[[str, dict[str, Any]], None]]] = {
    "log_paper": ("paper log", _replay_paper),
    "train_run": ("training run", replay_run),
    "bench": ("benchmark session", tracking.replay_bench),
    "report": ("report", replay_report),
}


def _describe(entry: dict[str, Any]) -> str:
    """One replayed entry, as `repro sync` and a run's metadata name it."""
    if entry["call"] == "log_paper":
        return f"{entry['paper']} ({entry['session']})"
    if entry["call"] == "train_run":
        return f"training run {entry['run_name']} ({entry['experiment']})"
    if entry["call"] == "bench":
        parent = entry["parent"] or {"name": "bench", "key": entry["rows"][0]["key"]}
        return f"{parent['name']} ({len(entry['rows'])} row(s), {parent['key']})"
    return f"report ({entry['key']})"
