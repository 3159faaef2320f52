"""The MLflow client, experiments and runs as every logger here opens them: a fast-failing HTTP
client, experiments named repro/<name> that open on their runs, runs born with their
provenance (repro.tracking.provenance) and the environment as ``env.*`` tags."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from repro.environment import collect
from repro.files import atomic_write_json
from repro.tracking import store
from repro.tracking.provenance import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    mark_experiment,
    source_tags,
)

EXPERIMENT_PREFIX = "repro/"
SPOOL_ENV = "REPRO_MLFLOW_SPOOL"  # where what could not be logged waits (repro.tracking.spool)
# the exit status of a command that measured and wrote everything while some MLflow logs wait in
# the spool for `repro sync`
EXIT_TRACKING_DEGRADED = 3
DEFAULT_SPOOL_DIR = ".mlflow-spool"
_BATCH = 90  # MLflow's log_batch takes at most 100 tags or params per call
log = logging.getLogger("repro.tracking")
_WARNED: set[str] = set()  # stores found failing in this process (warn_once)

# MLflow's own HTTP defaults wait 120 s for an answer and retry 7 times with doubling backoff
# (minutes per call, ~95 s even at 30 s and 2 retries); a harness that spools what it cannot log
# is better served by failing within seconds: a request that gets no answer costs at most
# (retries + 1) x timeout, 10 s. A user's own settings win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}


def _client(uri: str) -> Any:
    """An MlflowClient of ``uri``: HTTP requests bounded (:data:`HTTP_DEFAULTS`); a sqlite store
    created or mended under its lock and its calls retried while other writers hold it
    (:mod:`repro.tracking.store`)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow.tracking  # MLflow (a second to import) only where something is logged

    store.prepare(uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    return store.LockRetrying(client, uri) if store.sqlite_file(uri) else client


def _experiment_id(client: Any, uri: str, paper: str) -> str:
    """The id of experiment repro/<paper>, created if new, marked as a training experiment."""
    name = EXPERIMENT_PREFIX + paper
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        mark_experiment(client, exp)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except Exception:
        # another process (a second `repro run`, a Ray worker) created it in the meantime
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _create_run(
    client: Any,
    exp_id: str,
    run_name: str,
    tags: dict[str, str] | None = None,
    start_time: float | None = None,
) -> Any:
    """A new run that carries its provenance (entry point, commit, user) and this process's
    environment (repro.environment) as ``env.*`` tags, started at ``start_time`` (epoch
    seconds; now when None), so its Duration is that of the work it holds."""
    env_tags = {f"env.{k}": v for k, v in collect().items()}
    start_ms = int((time.time() if start_time is None else start_time) * 1000)
    return client.create_run(
        exp_id,
        start_time=start_ms,
        run_name=run_name,
        tags={**env_tags, **source_tags(), **(tags or {})},
    )


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


Point = tuple[str, float, int, int]  # a metric: name, value, timestamp (ms), step


def log_batch(
    client: Any,
    run_id: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    metrics: Iterable[Point] = (),
) -> None:
    """``params``, then ``tags`` (values as text, cut to MLflow's lengths), then ``metrics``,
    in batches MLflow takes."""
    from mlflow.entities import Metric, Param, RunTag

    for chunk in _chunks([Param(k, str(v)[:6000]) for k, v in (params or {}).items()]):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks([RunTag(k, str(v)[:7000]) for k, v in (tags or {}).items()]):
        client.log_batch(run_id, tags=chunk)
    for chunk in _chunks([Metric(k, float(v), ts, step) for k, v, ts, step in metrics]):
        client.log_batch(run_id, metrics=chunk)


@contextmanager
def terminating(
    client: Any, run_id: str, status: str = "FINISHED", end_time: float | None = None
) -> Iterator[None]:
    """End run ``run_id`` with ``status`` (at ``end_time``, epoch seconds; now when None) once
    the block completes, or FAILED when it raises; the exception goes on."""
    try:
        yield
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, status, end_time=int(end_time * 1000) if end_time else None)


ROW_KEY_TAG = "repro.row_key"  # a spoolable run's key: a replay finds what is logged already
ROW_LOGGED_TAG = "repro.row_logged"  # set last: the run holds everything


def log_run(
    uri: str,
    experiment: str,
    name: str,
    tags: dict[str, str] | None,
    fill: Callable[[Any, str], None],
    key: str | None = None,
    started: float | None = None,
    status: str = "FINISHED",
) -> str:
    """A new run of repro/<experiment> (from ``started``), filled by ``fill(client, run_id)``
    and ended with ``status`` (FAILED when ``fill`` raises); returns its id. ``key``: the run's
    own id (a replay of the spool logs it once): the run logged whole with that key is returned
    instead, and runs with it cut off half-way are deleted, so each key ends as one run."""
    client = _client(uri)
    exp_id = _experiment_id(client, uri, experiment)
    if key is not None:
        found = client.search_runs([exp_id], filter_string=f"tags.`{ROW_KEY_TAG}` = '{key}'")
        done = [r.info.run_id for r in found if r.data.tags.get(ROW_LOGGED_TAG)]
        for run in found:
            if run.info.run_id not in done[:1]:
                client.delete_run(run.info.run_id)
        if done:
            return done[0]
        tags = {**(tags or {}), ROW_KEY_TAG: key}
    rid = _create_run(client, exp_id, name, tags, start_time=started).info.run_id
    with terminating(client, rid, status):
        fill(client, rid)
        if key is not None:
            client.set_tag(rid, ROW_LOGGED_TAG, "true")
    return rid


def spool_dir(directory: Path | str | None = None) -> Path:
    """``directory``, else $REPRO_MLFLOW_SPOOL, else ./.mlflow-spool (made absolute)."""
    chosen = directory or os.environ.get(SPOOL_ENV) or DEFAULT_SPOOL_DIR
    return Path(chosen).expanduser().resolve()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def warn_once(uri: str, what: str, reason: str, goes_on: str) -> str:
    """The one outage warning (training, `repro bench`, `repro report`): ``what`` could not be
    logged to store ``uri`` (``reason``), ``goes_on`` says what happens regardless, and the
    spool keeps the rest for `repro sync`. Logged the first time ``uri`` fails in this process
    only (the user is told once per store, not once per run or row); returns the message."""
    message = (
        f"{what} ({uri}): the tracking store failed ({reason}); {goes_on}, and what is not "
        f"logged is kept in {spool_dir()}: run `repro sync` once the store answers"
    )
    if uri not in _WARNED:
        _WARNED.add(uri)
        log.warning("%s", message)
    return message


class StoreCalls:
    """Calls against one tracking store until the first one fails: from then on none is tried
    (the store is most likely away), ``down`` says why, and the user has been warned once
    (:func:`warn_once`: ``what`` could not be logged, ``goes_on`` says what happens regardless).
    ``seconds``: the time the calls took (a training's MLflow overhead)."""

    def __init__(self, uri: str | None, what: str, goes_on: str) -> None:
        self.uri, self.what, self.goes_on = uri, what, goes_on
        self.down = ""
        self.seconds = 0.0

    def __call__(self, fn: Callable[[], Any]) -> bool:
        """``fn()``; False when the store is, or now goes, away."""
        if self.down:
            return False
        start = time.perf_counter()
        try:
            fn()
            return True
        except Exception as exc:  # noqa: BLE001 - the store's fault, whatever MLflow raises
            self.down = first_line(exc)
            warn_once(str(self.uri), self.what, self.down, self.goes_on)
            return False
        finally:
            self.seconds += time.perf_counter() - start


def save_entry(
    call: str,
    uri: str,
    reason: str,
    fields: Mapping[str, Any],
    name: str,
    path: Path | None = None,
    directory: Path | str | None = None,
) -> Path:
    """One spool entry, in the spool's one format (repro.tracking.spool): ``call`` (which replay
    logs it), ``uri``, the call's arguments (``fields``), ``reason`` and ``spooled_at``; written
    atomically to ``path`` (an entry rewritten as more piles up) or to a new file named after
    ``name`` in the spool folder. Returns the file written."""
    entry = {"call": call, "uri": uri, **fields, "reason": reason, "spooled_at": time.time()}
    if path is None:
        path = spool_dir(directory) / f"{time.time_ns()}-{name}.json"
    atomic_write_json(path, entry, default=str)
    return path


def fail_left_running(uri: str, keys: Mapping[str, str], reason: str) -> list[str]:
    """Mark FAILED the runs of store ``uri`` still RUNNING whose tag ``k`` is ``keys[k]`` (the
    runs an entry that cannot be replayed would have ended), tagged ``repro.failed_by`` with
    ``reason``; returns their ids."""
    if not keys:
        return []
    client = _client(uri)
    experiments = [
        e.experiment_id for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX)
    ]
    failed: list[str] = []
    for tag, value in keys.items() if experiments else ():
        query = f"tags.`{tag}` = '{value}' and attributes.status = 'RUNNING'"
        for run in client.search_runs(experiments, filter_string=query, max_results=1000):
            client.set_tag(run.info.run_id, "repro.failed_by", reason)
            client.set_terminated(run.info.run_id, "FAILED")
            failed.append(run.info.run_id)
    return failed
