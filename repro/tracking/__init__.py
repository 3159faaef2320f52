"""MLflow: one experiment per paper, one run per measured model. The only package importing mlflow.

Runs carry every result row as a ``results.json`` artifact and tags (paper, tables, rows,
per-claim claimed/measured/verdict), so ``repro report --from mlflow`` rebuilds the report from
MLflow alone. Logging happens in the driver, one writer, because sqlite locks under many writers.
When the store cannot be reached, :mod:`repro.tracking.spool` keeps what could not be logged on
disk and replays it later; :func:`log_paper` is idempotent per session so a replay never logs a
run twice.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from repro.errors import ReproError
from repro.tracking import store
from repro.tracking.client import (
    EXPERIMENT_PREFIX,
    _client,
    _create_run,
    _experiment_id,
    log_batch,
    log_run,
    terminating,
)
from repro.tracking.provenance import command_entry, command_line, ui_link
from repro.tracking.training import system_metrics
from repro.verdicts import VERDICTS, GroupOutcome, worst

# a read-only call of MLflow's REST API (the one `mlflow ui` opens with): any HTTP answer, an
# error status included, says the API answers; a server can answer /health and hang here
API_PROBE = ("/api/2.0/mlflow/experiments/search", b'{"max_results": 1}')


def _unhealthy(uri: str, timeout: float) -> str:
    """Why the server at ``uri`` fails its health check or does not answer its API within
    ``timeout`` seconds ("": both answer)."""
    base = uri.rstrip("/")
    path, body = API_PROBE
    probes = (
        ("/health", urllib.request.Request(f"{base}/health")),
        (path, urllib.request.Request(f"{base}{path}", data=body, method="POST",
                                      headers={"Content-Type": "application/json"})),
    )  # fmt: skip
    for name, request in probes:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                resp.read()
        except urllib.error.HTTPError:
            if name == "/health":
                return f"{name} answers with an error status"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = str(getattr(exc, "reason", exc))
            if "timed out" in reason:
                reason = f"no answer within {timeout:g} s"
            return reason if name == "/health" else f"it answers /health, but not {name}: {reason}"
    return ""


def check_tracking_uri(uri: str) -> None:
    """Fail early, before measuring, when the tracking store cannot be used: a file store, a
    sqlite file in a missing folder or half-migrated (:func:`repro.tracking.store.prepare`,
    mended where nothing can be lost), a server whose health check or API does not answer."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        raise ReproError(
            f"MLflow tracking URI {uri!r} is a file store, which MLflow 3 refuses.",
            "use a database URI such as sqlite:///mlflow.db (the default) or an MLflow server "
            "(http://host:5000).",
        )
    if scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.exists():
            raise ReproError(
                f"the directory of MLflow database {path} does not exist.",
                f"create {path.parent} or set --tracking-uri sqlite:///mlflow.db.",
            )
        if path.is_file():  # a new one is created (under its lock) when first logged to
            store.prepare(uri)
    elif scheme in ("http", "https") and (why := _unhealthy(uri, 5)):
        raise ReproError(
            f"cannot reach the MLflow tracking server at {uri!r} ({why}); nothing was "
            "measured or logged.",
            "start it (`mlflow server --backend-store-uri sqlite:///mlflow.db --port 5000`), "
            "correct --tracking-uri / MLFLOW_TRACKING_URI, or leave both unset to log to "
            "sqlite:///mlflow.db in the repository.",
        )


def reachable(uri: str, timeout: float = 3.0) -> bool:
    """Whether the tracking server answers its health check and its API now (databases:
    always True)."""
    return urlparse(uri).scheme not in ("http", "https") or not _unhealthy(uri, timeout)


def new_session() -> str:
    return uuid.uuid4().hex[:12]


PARENT_ROLE = "reproduction"  # tag repro.role of the parent run of one paper's session


def claim_metrics(row: dict[str, Any]) -> dict[str, float]:
    """``<id>.claimed``, ``<id>.measured`` and ``<id>.ratio`` (measured / claimed) of one result
    row, where they are numbers: MLflow's compare view and charts then put them side by side."""
    cid = row["claim_id"]
    out: dict[str, float] = {}
    for part in ("claimed", "measured"):
        # shapes and values not measured stay in tags and the artifact
        with contextlib.suppress(TypeError, ValueError):
            out[f"{cid}.{part}"] = float(row[part])
    claimed, measured = out.get(f"{cid}.claimed"), out.get(f"{cid}.measured")
    if claimed and measured is not None:
        out[f"{cid}.ratio"] = measured / claimed
    return out


def _log_group(
    client: Any,
    exp_id: str,
    paper: str,
    session: str,
    parent: str,
    g: GroupOutcome,
    environment: dict[str, Any],
) -> None:
    """One measured group as one child run of ``parent``, from its measurement's start to end."""
    rows = [r.as_row() for r in g.results]
    # born with its session and group, so a replay can find a run that was cut off early
    rid = _create_run(
        client,
        exp_id,
        run_name=g.model_key or "claims without a model",
        tags={
            "repro.session": session,
            "model_key": g.model_key,
            "paper": paper,
            "mlflow.parentRunId": parent,
        },
        start_time=g.started or None,
    ).info.run_id
    with terminating(client, rid, end_time=g.ended or None):
        params = {
            "model": g.model,
            "input_size": "x".join(map(str, g.input_size)),
            "flavour": json.dumps(g.kwargs, sort_keys=True),
            **{f"env.{k}": v for k, v in environment.items()},
        }
        tags = {
            "tables": ", ".join(sorted({r.table for r in g.results})),
            "rows": ", ".join(r.row for r in g.results)[:4000],
            "verdict": worst(r.verdict for r in g.results),
        }
        for r in g.results:
            base = f"claim.{r.claim_id}"
            tags[f"{base}.claimed"] = f"{r.claimed} {r.unit}"
            tags[f"{base}.measured"] = r.measured
            tags[f"{base}.verdict"] = r.verdict
            tags[f"{base}.unit"] = r.unit
        stamp = int(1000 * (g.ended or time.time()))
        points = [(k, v, stamp, 0) for k, v in g.summary.items()]
        for r in rows:
            points += [(k, v, stamp, 0) for k, v in claim_metrics(r).items()]
        log_batch(client, rid, params, tags, points)
        client.log_dict(rid, {"paper": paper, "rows": rows}, "results.json")


def _parent_run(
    client: Any,
    exp_id: str,
    paper: str,
    session: str,
    groups: Sequence[GroupOutcome] | None,
    started: float | None,
    command: str | None = None,
) -> str:
    """The parent run of this paper's session (found again on a replay): it holds the per-model
    runs as children, the verdict counts of ``groups`` as metrics (None: none yet) and the
    command line as a param."""
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`repro.session` = '{session}' and tags.`repro.role` = '{PARENT_ROLE}'",
        max_results=1,
    )
    stamp = int(time.time() * 1000)
    counts = dict.fromkeys(VERDICTS, 0)
    for g in groups or []:
        for r in g.results:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
    # none yet (groups None): opened before the measurements (open_paper_run)
    verdicts = [(f"verdicts.{k}", v, stamp, 0) for k, v in counts.items() if groups is not None]
    if found:  # opened before the measurements, or a replay's
        rid = found[0].info.run_id
        log_batch(client, rid, metrics=verdicts)
        return rid
    starts = [g.started for g in groups or [] if g.started]
    start = started or (min(starts) if starts else None)
    tags = {"repro.session": session, "paper": paper, "repro.role": PARENT_ROLE}
    command = command or command_line()
    name = f"{paper} ({command_entry(command)}, {session})"
    rid = _create_run(client, exp_id, name, tags, start_time=start).info.run_id
    log_batch(client, rid, {"command": command, "paper": paper}, metrics=verdicts)
    return rid


def open_paper_run(uri: str, paper: str, session: str, started: float | None = None) -> str:
    """The parent run of ``paper``'s ``session``, opened before its measurements so that the
    training runs they start are its children; :func:`log_paper` with the same session finds
    it, logs the verdicts and ends it. Returns its id."""
    client = _client(uri)
    return _parent_run(client, _experiment_id(client, uri, paper), paper, session, None, started)


def log_paper(
    uri: str,
    paper: str,
    groups: Sequence[GroupOutcome],
    environment: dict[str, Any],
    session: str | None = None,
    started: float | None = None,
    command: str | None = None,
) -> str:
    """Log one paper's measurements: one parent run for the session (:func:`_parent_run`,
    from ``started``, the reproduction's start in epoch seconds, to the end of logging; its
    ``command``, by default this process's) and
    one child run per measured group (its started / ended, where known, the child's start and
    end). Returns the session id that tags every run of this call. Logging a ``session`` again (a
    replay after the server went away mid-paper) skips the groups already finished and deletes
    the half-logged runs before logging them anew, so each group ends as exactly one run."""
    client = _client(uri)
    exp_id = _experiment_id(client, uri, paper)
    finished: set[str] = set()
    if session is None:
        session = new_session()
    else:
        for old in client.search_runs(
            [exp_id], filter_string=f"tags.`repro.session` = '{session}'", max_results=5000
        ):
            if old.data.tags.get("repro.role") == PARENT_ROLE:
                continue
            if old.info.status == "FINISHED" and old.data.tags.get("model_key") not in finished:
                finished.add(old.data.tags.get("model_key", ""))
            else:
                client.delete_run(old.info.run_id)
    parent = _parent_run(client, exp_id, paper, session, groups, started, command)
    with terminating(client, parent):  # FAILED with the first child that fails
        for g in groups:
            if g.model_key not in finished:
                _log_group(client, exp_id, paper, session, parent, g, environment)
    return session


def experiment_links(uri: str, papers: list[str]) -> dict[str, str]:
    """paper -> the MLflow UI link of its experiment's runs (papers without one left out)."""
    client = _client(uri)
    exps = {paper: client.get_experiment_by_name(EXPERIMENT_PREFIX + paper) for paper in papers}
    return {paper: ui_link(uri, e.experiment_id) for paper, e in exps.items() if e is not None}


def load_results(uri: str, papers: list[str] | None = None) -> list[dict[str, Any]]:
    """Result rows of the newest session of each paper, read back from MLflow."""
    client = _client(uri)
    rows: list[dict[str, Any]] = []
    for exp in client.search_experiments():
        if not exp.name.startswith(EXPERIMENT_PREFIX):
            continue
        paper = exp.name.removeprefix(EXPERIMENT_PREFIX)
        if papers and paper not in papers:
            continue
        runs = client.search_runs(
            [exp.experiment_id],
            # only paper runs carry a session tag; bench/train/scaling runs share the prefix
            filter_string="attributes.status = 'FINISHED' and tags.`repro.session` != ''",
            order_by=["attributes.start_time DESC"],
            max_results=2000,
        )
        runs = [r for r in runs if r.data.tags.get("repro.role") != PARENT_ROLE]
        if not runs:
            continue
        session = runs[0].data.tags.get("repro.session")
        for run in runs:
            if run.data.tags.get("repro.session") == session:
                rows.extend(_load_dict(client, run.info.run_id)["rows"])
    return rows


def _load_dict(client: Any, run_id: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "results.json", tmp)
        return json.loads(Path(path).read_text())


# --- Benchmarks (`repro bench`) ------------------------------------------------------------

BENCH_EXPERIMENT = "bench"  # EXPERIMENT_PREFIX + this = "repro/bench"
BENCH_PARAMS = (
    "model",
    "mode",
    "batch_size",
    "batch_requested",
    "precision",
    "channels_last",
    "compile",
    "device",
    "torch",
    "cuda",
    "parallel",
    "workers",
    "data_source",
)


BENCH_SESSION_TAG = "repro.bench_session"  # a `repro bench` parent run's key (found again)


def open_parent(
    uri: str,
    experiment: str,
    name: str,
    tags: dict[str, str] | None = None,
    key: str | None = None,
    command: str | None = None,
) -> str:
    """A parent run in repro/<experiment> for the runs of one command (`repro bench`): its
    children name it in mlflow.parentRunId; the command line (``command``, else this
    process's) is its param. With ``key``, the run tagged with it is found again if it
    exists (a spooled `repro bench` replayed), else made with that tag."""
    client = _client(uri)
    exp_id = _experiment_id(client, uri, experiment)
    if key is not None:
        found = client.search_runs(
            [exp_id], filter_string=f"tags.`{BENCH_SESSION_TAG}` = '{key}'", max_results=1
        )
        if found:
            return found[0].info.run_id
        tags = {**(tags or {}), BENCH_SESSION_TAG: key}
    rid = _create_run(client, exp_id, name, {"repro.role": PARENT_ROLE, **(tags or {})}).info.run_id
    log_batch(client, rid, {"command": command or command_line()})
    return rid


def close_parent(uri: str, run_id: str, metrics: dict[str, float], failed: bool = False) -> None:
    client = _client(uri)
    stamp = int(time.time() * 1000)
    log_batch(client, run_id, metrics=[(k, v, stamp, 0) for k, v in metrics.items()])
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def log_benchmark(
    uri: str,
    row: dict[str, Any],
    series: dict[str, list[tuple[int, float, int]]] | None = None,
    parent: str | None = None,
    started: float | None = None,
    key: str | None = None,
) -> str:
    """Log one benchmark configuration as one run of experiment "repro/bench": the row's
    identifying columns as params, its numeric columns as metrics, status and note as tags, and
    ``series`` (MLflow system-metric name -> [(step, value, timestamp_ms)]) as "system/<name>"
    metrics with step = sample index, as MLflow's own system-metrics monitor names them.
    ``key``: the row's own id (a replay of the spool logs it once). Returns the run id."""

    def fill(client: Any, rid: str) -> None:
        now = int(time.time() * 1000)
        params = {k: row.get(k, "") for k in BENCH_PARAMS}
        tags = {k: row.get(k, "") for k in ("status", "note", "device_type")}
        metrics = [
            (k, v, now, 0)
            for k, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in BENCH_PARAMS
        ]
        log_batch(client, rid, params, tags, [*metrics, *system_metrics(series or {})])

    name = f"{row.get('model')}-{row.get('mode')}-b{row.get('batch_size')}-{row.get('precision')}"
    tags = {"mlflow.parentRunId": parent} if parent else {}
    status = "FINISHED" if row.get("status") == "ok" else "FAILED"
    return log_run(uri, BENCH_EXPERIMENT, name, tags, fill, key, started, status)


def replay_bench(uri: str, entry: dict[str, Any]) -> None:
    """A spooled `repro bench` (its "bench" entry) logged: its parent run (if it has one) found
    or made by key, the rows it lacks, then the parent's end (when the benchmarks had ended);
    twice is once."""
    parent, pid = entry["parent"], None
    if parent is not None:
        key, command = parent["key"], parent["command"]
        pid = open_parent(uri, BENCH_EXPERIMENT, parent["name"], None, key, command)
    for r in entry["rows"]:
        log_benchmark(uri, r["row"], r["series"], pid, r["started"], r["key"])
    if parent is not None and parent["closed"] is not None:
        close_parent(uri, pid, **parent["closed"])


DEMO_EXPERIMENT = "demos"  # "repro/demos"


def log_demo(
    uri: str,
    name: str,
    metrics: dict[str, float],
    params: dict[str, Any],
    artifacts: list[str],
    run_id: str | None = None,
) -> str:
    """One embedded demonstration (digits, detection) as one run of "repro/demos": its headline
    numbers as metrics, its settings as params, its JSON and CSV as artifacts. ``run_id``: the
    demo's parent run (:func:`open_parent`, opened before its training runs), finished here;
    None: a new run."""
    client = _client(uri)
    if run_id is None:
        exp_id = _experiment_id(client, uri, DEMO_EXPERIMENT)
        run_id = _create_run(client, exp_id, name, {"repro.demo": name}).info.run_id
    with terminating(client, run_id):
        stamp = int(time.time() * 1000)
        log_batch(client, run_id, params, metrics=[(k, v, stamp, 0) for k, v in metrics.items()])
        for path in artifacts:
            client.log_artifact(run_id, path)
    return run_id
