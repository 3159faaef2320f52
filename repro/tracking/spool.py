"""What could not be logged to MLflow, kept on disk until the store answers again.

A spooled entry is one JSON file (:func:`repro.tracking.client.save_entry`): the call, the
tracking URI, the call's arguments, the reason and when. The calls (:data:`KINDS`): a paper's
:func:`repro.tracking.log_paper`, a training run's :class:`repro.tracking.training.TrainingRun`,
a `repro bench` (its parent run and the rows it could not log) and a `repro report` (the paths
of its files, which stay on disk). Each carries its session id, run name or key, so a replay is
idempotent (what was cut off half-way is finished, not logged twice). Entries are replayed by
the next `repro run` against the same store once it answers, or by `repro sync`. Files are
written atomically; an entry is deleted only after its replay succeeded. An entry that cannot
be replayed (not JSON, another shape) is set aside in the spool's ``rejected/`` folder, named in
a warning and in `repro sync`'s line, and the runs it would have ended are marked FAILED; the
entries behind it go on.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import tracking
from repro.tracking.client import fail_left_running, first_line, save_entry, spool_dir
from repro.tracking.provenance import command_line
from repro.tracking.report import replay_report
from repro.tracking.store import StoreError
from repro.tracking.training import TRAIN_RUN_TAG, replay_run
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
    """Spooled entries, oldest first; with ``uri``, those meant for that store and those that
    cannot be read (a replay sets them aside)."""
    folder = spool_dir(directory)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    return [p for p in found if uri is None or _load(p)[0].get("uri", uri) == uri]


def _load(path: Path) -> tuple[dict[str, Any], str]:
    """The entry in ``path`` and why it cannot be replayed ("": it can)."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {}, f"not readable as JSON: {exc}"
    if not isinstance(entry, dict):
        return {}, f"a JSON {type(entry).__name__}, not an object"
    if not isinstance(entry.get("call"), str) or entry["call"] not in KINDS:
        return entry, f"call {entry.get('call')!r} is none of {', '.join(KINDS)}"
    fields = {"uri": str, **SHAPES[entry["call"]]}
    wrong = [k for k, kind in fields.items() if not isinstance(entry.get(k), kind)]
    if wrong:
        return entry, f"field(s) {', '.join(wrong)} missing or of the wrong type"
    try:
        _check_parts(entry)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return entry, f"a record in it is malformed ({type(exc).__name__}: {exc})"
    return entry, ""


def _check_parts(entry: dict[str, Any]) -> None:
    """Raises for an entry whose records a replay could not read."""
    if entry["call"] == "log_paper":
        for group in entry["groups"]:
            GroupOutcome.from_record(group)
    elif entry["call"] == "train_run":
        _require(entry["points"], {"step"})
        for point in entry["points"]:
            int(point["step"])
        if entry.get("close") is not None:  # close_train_run's arguments
            _require([entry["close"]], {"summary", "tags", "status"})
            if extra := set(entry["close"]) - {"summary", "tags", "status", "step", "last_point"}:
                raise KeyError(f"close has unknown field(s) {', '.join(sorted(extra))}")
    elif entry["call"] == "bench":
        _require(entry["rows"], {"row", "key", "series", "started"})
        if entry["parent"] is not None:
            _require([entry["parent"]], {"key", "name", "command", "closed"})


def _require(records: list[Any], keys: set[str]) -> None:
    for record in records:
        if not isinstance(record, dict):
            raise TypeError(f"a record is a {type(record).__name__}, not an object")
        if missing := keys - record.keys():
            raise KeyError(f"a record lacks {', '.join(sorted(missing))}")


@dataclass
class Replay:
    replayed: list[str] = field(default_factory=list)  # "paper (session)" of each entry logged
    remaining: list[Path] = field(default_factory=list)
    error: str = ""  # why the first remaining entry could not be logged
    kinds: Counter[str] = field(default_factory=Counter)  # call -> entries logged
    rejected: list[str] = field(default_factory=list)  # malformed entries set aside, and why

    def summary(self) -> str:
        """What was replayed, by kind: "2 paper log(s), 1 report(s)", and what was set aside."""
        text = ", ".join(f"{n} {KINDS[k][0]}(s)" for k, n in self.kinds.items()) or "nothing"
        if self.rejected:
            text += f"; {len(self.rejected)} malformed entr(y/ies) set aside: " + "; ".join(
                self.rejected
            )
        return text


def replay(
    uri: str | None = None, directory: Path | str | None = None, only_uri: str | None = None
) -> Replay:
    """Log every pending entry (to ``uri`` when given, else to the store it was meant for),
    oldest first, deleting each once logged. A malformed entry is set aside (:func:`reject`)
    and the next one goes on. Stops at the first failure of the store: it is most likely still
    away, and later entries keep their order."""
    outcome = Replay()
    entries = pending(directory, only_uri)
    for i, path in enumerate(entries):
        entry, why = _load(path)
        if why:
            outcome.rejected.append(reject(path, why, entry, uri or only_uri))
            continue
        target = uri or entry["uri"]
        try:
            KINDS[entry["call"]][1](target, entry)
        except StoreError:  # the store is unusable until the user decides: said as it is
            raise
        except Exception as exc:  # the store's fault, whatever MLflow raises for it
            outcome.error = first_line(exc)
            outcome.remaining = entries[i:]
            return outcome
        path.unlink(missing_ok=True)
        outcome.kinds[entry["call"]] += 1
        outcome.replayed.append(_describe(entry))
    return outcome


SESSION_TAG = "repro.session"  # a paper's session (repro.tracking.log_paper)
REJECTED = "rejected"  # the spool's folder of malformed entries
_SESSION_IN_NAME = re.compile(r"-([0-9a-f]{12})\.json$")  # save_paper's and bench's file names


def reject(path: Path, why: str, entry: dict[str, Any], uri: str | None) -> str:
    """Set the malformed entry ``path`` aside in the spool's rejected/ folder, fail the runs it
    would have ended (still RUNNING in its store), warn, and return "name (why)"."""
    aside = path.parent / REJECTED / path.name
    aside.parent.mkdir(exist_ok=True)
    os.replace(path, aside)
    target = uri or (entry.get("uri") if isinstance(entry.get("uri"), str) else None)
    ended = ""
    if target:
        try:
            failed = fail_left_running(target, _run_keys(path, entry), path.name)
            if failed:
                ended = f"; the run(s) it would have ended, {', '.join(failed)}, marked FAILED"
        except Exception as exc:  # noqa: BLE001 - the store is away: the entry is set aside still
            ended = f"; the runs it would have ended were not reached ({first_line(exc)})"
    log.warning(
        "spooled MLflow entry %s is malformed (%s): set aside in %s%s; the entries behind it "
        "go on. Fix: correct it and move it back into %s, or delete it.",
        path.name, why, aside, ended, path.parent,
    )  # fmt: skip
    return f"{path.name} ({why}){ended}"


def _run_keys(path: Path, entry: dict[str, Any]) -> dict[str, str]:
    """Tag -> value of the runs an entry would have ended, from what of it can be read."""
    keys: dict[str, str] = {}
    if found := _SESSION_IN_NAME.search(path.name):
        keys[SESSION_TAG] = keys[tracking.BENCH_SESSION_TAG] = found.group(1)
    parent = entry.get("parent")
    for tag, value in (
        (SESSION_TAG, entry.get("session")),
        (TRAIN_RUN_TAG, entry.get("run_name")),
        (tracking.BENCH_SESSION_TAG, parent.get("key") if isinstance(parent, dict) else None),
    ):
        if isinstance(value, str) and value and "'" not in value:
            keys[tag] = value
    return keys


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
# call -> the fields its entry must hold, and their types (a replay reads them)
SHAPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "log_paper": {"paper": str, "session": str, "groups": list, "environment": dict},
    "train_run": {"run_name": str, "experiment": str, "params": dict, "tags": dict, "points": list},
    "bench": {"parent": (dict, type(None)), "rows": list},
    "report": {"files": dict, "key": str},
}
log = logging.getLogger("repro.tracking")


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
