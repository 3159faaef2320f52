"""Step 4 of a run, log: each paper to MLflow (repro.tracking: one experiment per paper, one run
per measured group), after the measurement files are written."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from repro import tracking
from repro.environment import process_seconds
from repro.runner.plan import RunPlan
from repro.runner.write import PaperRun
from repro.tracking import spool
from repro.tracking.client import first_line
from repro.verdicts import GroupOutcome


def mlflow_groups(run: PaperRun) -> list[GroupOutcome]:
    """Measured groups (a model, or a speed group) with their own rows, plus one group per model
    (or none) for claims that were not run."""
    groups = {g.model_key: replace(g, results=list(g.results)) for g in run.groups}
    measured = {r.claim_id for g in run.groups for r in g.results}
    for r in run.results:
        if r.claim_id not in measured:
            name = r.model.split("(")[0].split("@")[0]
            empty = GroupOutcome(r.model, name, {}, [], {}, [], paper=run.paper)
            groups.setdefault(r.model, empty).results.append(r)
    return list(groups.values())


def open_parents(run: RunPlan) -> RunPlan:
    """Before measuring, the MLflow session and parent run of each paper whose accuracy claims
    may train, so that the training runs are its children (:func:`log` finds it again by the
    session). A store that fails here only leaves those training runs without a parent."""
    uri = run.settings.tracking_uri
    papers = [p.paper.paper for p in run.plans if p.of("accuracy")]
    if not uri or not papers:
        return run
    started = time.time() - process_seconds()  # the reproduction's start, as log's
    sessions, parents = {}, {}
    for paper in papers:
        session = tracking.new_session()
        try:
            parents[paper] = tracking.open_paper_run(uri, paper, session, started)
        except Exception as exc:  # whatever MLflow raises for a store that went away
            print(f"warning: no MLflow parent run for {paper}: {first_line(exc)}", file=sys.stderr)
            continue
        sessions[paper] = session
    settings = replace(run.settings, mlflow_sessions=sessions, mlflow_parents=parents)
    return replace(run, settings=settings)


class PaperLogger:
    """Logs papers one at a time, as each is written (:meth:`paper`), then :meth:`close`. The
    MLflow session, seconds and outcome go into each paper's metadata (``meta["mlflow"]``:
    logged, or spooled with the file and the reason). A store that stops answering does not
    stop the run: what cannot be logged is spooled (:mod:`repro.tracking.spool`) and replayed
    as soon as the store answers again, here or by `repro sync`. Entries spooled by earlier
    runs for this store are replayed first. ``sessions``: a paper's session whose parent run
    :func:`open_parents` opened."""

    def __init__(self, tracking_uri: str, sessions: Mapping[str, str] | None = None) -> None:
        self.uri = tracking_uri
        self.sessions = sessions or {}
        self.start = time.perf_counter()
        self.started = time.time() - process_seconds()  # the reproduction's start: its parent's
        self.replayed: list[str] = []
        self.down = ""  # why the store failed, while it has not answered since
        self.logged: list[PaperRun] = []
        self.catch_up()

    def catch_up(self) -> None:
        if spool.pending(uri=self.uri) and tracking.reachable(self.uri):
            outcome = spool.replay(only_uri=self.uri)
            self.replayed.extend(outcome.replayed)
            self.down = outcome.error if outcome.remaining else ""

    def paper(self, run: PaperRun) -> None:
        env = run.meta.get("environment", {})
        self.logged.append(run)
        session = self.sessions.get(run.paper) or tracking.new_session()
        run.meta["mlflow_session"] = session
        groups = mlflow_groups(run)
        if self.down:
            self.catch_up()
        if not self.down:
            try:
                tracking.log_paper(self.uri, run.paper, groups, env, session, self.started)
                run.meta["mlflow"] = {"status": "logged", "uri": self.uri}
                return
            except Exception as exc:  # whatever MLflow raises for a store that went away
                self.down = first_line(exc)
        records = [g.record() for g in groups]
        path = spool.save_paper(
            self.uri, run.paper, records, env, session, self.down, None, self.started
        )
        run.meta["mlflow"] = {
            "status": "spooled",
            "uri": self.uri,
            "spool": str(path),
            "reason": self.down,
        }

    def close(self) -> None:
        """A last replay if the store went away; each paper's outcome and seconds."""
        if self.down:
            self.catch_up()
        for run in self.logged:
            entry = run.meta["mlflow"]
            if entry["status"] == "spooled" and not Path(entry["spool"]).exists():
                entry["status"] = "logged after a replay"
            run.meta["mlflow_seconds"] = round(time.perf_counter() - self.start, 3)
            if self.replayed:
                run.meta["mlflow_replayed"] = self.replayed


def log(
    runs: Sequence[PaperRun], tracking_uri: str | None, sessions: Mapping[str, str] | None = None
) -> None:
    """Log every paper (:class:`PaperLogger`); nothing without a ``tracking_uri``."""
    if not tracking_uri:
        return
    logger = PaperLogger(tracking_uri, sessions)
    for run in runs:
        logger.paper(run)
    logger.close()


def degraded(runs: Sequence[PaperRun]) -> str | None:
    """One line when some paper's results could not be logged and wait in the spool."""
    spooled = [r for r in runs if r.meta.get("mlflow", {}).get("status") == "spooled"]
    if not spooled:
        return None
    first = spooled[0].meta["mlflow"]
    folder = Path(first["spool"]).parent
    return (
        f"tracking degraded: {len(spooled)} of {len(runs)} paper(s) not logged to "
        f"{first['uri']} ({first['reason']}); their results are written and spooled in "
        f"{folder}; run `repro sync` once the store answers."
    )
