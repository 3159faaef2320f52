"""MLflow: one experiment per paper, one run per measured model. The only package importing mlflow.

Runs carry every result row as a ``results.json`` artifact and tags (paper, tables, rows,
per-claim claimed/measured/verdict), so ``repro report --from mlflow`` rebuilds the report from
MLflow alone. Logging happens in the driver, one writer, because sqlite locks under many writers.
When the store cannot be reached, :mod:`repro.tracking.spool` keeps what could not be logged on
disk and replays it later; :func:`log_paper` is idempotent per session so a replay never logs a
run twice.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from repro.environment import collect
from repro.errors import ReproError

EXPERIMENT_PREFIX = "repro/"
VERDICT_ORDER = ("error", "deviates", "measured", "reproduced", "not-run")
_BATCH = 90  # MLflow's log_batch takes at most 100 tags or params per call


def check_tracking_uri(uri: str) -> None:
    """Fail early, before measuring, when the tracking store cannot be used."""
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
        return
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as resp:
                resp.read()
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise ReproError(
                f"cannot reach the MLflow tracking server at {uri!r} ({exc}); nothing was "
                "measured or logged.",
                "start it (`mlflow server --backend-store-uri sqlite:///mlflow.db --port 5000`), "
                "correct --tracking-uri / MLFLOW_TRACKING_URI, or leave both unset to log to "
                "sqlite:///mlflow.db in the repository.",
            ) from None


# MLflow's own HTTP defaults retry a refused connection 7 times with doubling backoff (minutes
# per call); a harness that spools what it cannot log is better served by failing within seconds.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def reachable(uri: str, timeout: float = 3.0) -> bool:
    """Whether the tracking server answers its health check now (databases: always True)."""
    if urlparse(uri).scheme not in ("http", "https"):
        return True
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
            resp.read()
        return True
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def new_session() -> str:
    return uuid.uuid4().hex[:12]


def _client(uri: str) -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, uri: str, paper: str) -> str:
    name = EXPERIMENT_PREFIX + paper
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def _create_run(client: Any, exp_id: str, run_name: str, tags: dict[str, str] | None = None) -> Any:
    """A new run that carries this process's environment (repro.environment) as ``env.*`` tags,
    so every run says which versions, GPU, driver and commit produced it."""
    env_tags = {f"env.{k}": v for k, v in collect().items()}
    return client.create_run(exp_id, run_name=run_name, tags={**env_tags, **(tags or {})})


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


def _worst(verdicts: Iterable[str]) -> str:
    vs = set(verdicts)
    return next((v for v in VERDICT_ORDER if v in vs), "not-run")


def log_paper(
    uri: str,
    paper: str,
    groups: list[dict[str, Any]],
    environment: dict[str, Any],
    session: str | None = None,
) -> str:
    """Log one paper's measurements. ``groups``: one dict per measured model with keys
    model_key, model, kwargs, input_size, summary (metrics) and rows (result dicts).
    Returns the session id that tags every run of this call. Logging a ``session`` again (a
    replay after the server went away mid-paper) skips the groups already finished and deletes
    the half-logged runs before logging them anew, so each group ends as exactly one run."""
    from mlflow.entities import Metric, Param, RunTag

    client = _client(uri)
    exp_id = _experiment_id(client, uri, paper)
    finished: set[str] = set()
    if session is None:
        session = new_session()
    else:
        for old in client.search_runs(
            [exp_id], filter_string=f"tags.`repro.session` = '{session}'", max_results=5000
        ):
            if old.info.status == "FINISHED" and old.data.tags.get("model_key") not in finished:
                finished.add(old.data.tags.get("model_key", ""))
            else:
                client.delete_run(old.info.run_id)
    for g in groups:
        if g["model_key"] in finished:
            continue
        rows = g["rows"]
        # born with its session and group, so a replay can find a run that was cut off early
        run = _create_run(
            client,
            exp_id,
            run_name=g["model_key"] or "claims without a model",
            tags={"repro.session": session, "model_key": g["model_key"], "paper": paper},
        )
        rid = run.info.run_id
        try:
            params = {
                "model": g.get("model") or "",
                "input_size": "x".join(map(str, g.get("input_size") or [])),
                "flavour": json.dumps(g.get("kwargs") or {}, sort_keys=True),
                **{f"env.{k}": v for k, v in environment.items()},
            }
            tags = {
                "repro.session": session,
                "paper": paper,
                "model_key": g["model_key"],
                "tables": ", ".join(sorted({r["table"] for r in rows})),
                "rows": ", ".join(r["row"] for r in rows)[:4000],
                "verdict": _worst(r["verdict"] for r in rows),
            }
            for r in rows:
                base = f"claim.{r['claim_id']}"
                tags[f"{base}.claimed"] = f"{r['claimed']} {r['unit']}"
                tags[f"{base}.measured"] = r["measured"]
                tags[f"{base}.verdict"] = r["verdict"]
            metrics = [Metric(k, float(v), 0, 0) for k, v in (g.get("summary") or {}).items()]
            for r in rows:
                try:
                    metrics.append(Metric(f"claim.{r['claim_id']}", float(r["measured"]), 0, 0))
                except ValueError:
                    pass  # shapes and empty values stay in tags and the artifact
            for chunk in _chunks([Param(k, str(v)[:6000]) for k, v in params.items()]):
                client.log_batch(rid, params=chunk)
            for chunk in _chunks([RunTag(k, str(v)[:7000]) for k, v in tags.items()]):
                client.log_batch(rid, tags=chunk)
            for chunk in _chunks(metrics):
                client.log_batch(rid, metrics=chunk)
            client.log_dict(rid, {"paper": paper, "rows": rows}, "results.json")
            client.set_terminated(rid, "FINISHED")
        except Exception:
            client.set_terminated(rid, "FAILED")
            raise
    return session


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
        if not runs:
            continue
        session = runs[0].data.tags.get("repro.session")
        for run in runs:
            if run.data.tags.get("repro.session") != session:
                continue
            rows.extend(_load_dict(client, run.info.run_id)["rows"])
    return rows


def _load_dict(client: Any, run_id: str) -> dict[str, Any]:
    import tempfile

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


def log_benchmark(
    uri: str,
    row: dict[str, Any],
    series: dict[str, list[tuple[int, float, int]]] | None = None,
) -> str:
    """Log one benchmark configuration as one run of experiment "repro/bench": the row's
    identifying columns as params, its numeric columns as metrics, status and note as tags, and
    ``series`` (MLflow system-metric name -> [(step, value, timestamp_ms)]) as "system/<name>"
    metrics with step = sample index, as MLflow's own system-metrics monitor names them.
    Returns the run id."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    client = _client(uri)
    exp_id = _experiment_id(client, uri, BENCH_EXPERIMENT)
    name = f"{row.get('model')}-{row.get('mode')}-b{row.get('batch_size')}-{row.get('precision')}"
    run = _create_run(client, exp_id, run_name=name)
    rid = run.info.run_id
    try:
        now = int(time.time() * 1000)
        params = [Param(k, str(row.get(k, ""))[:6000]) for k in BENCH_PARAMS]
        tags = [
            RunTag("status", str(row.get("status", ""))),
            RunTag("note", str(row.get("note", ""))[:7000]),
            RunTag("device_type", str(row.get("device_type", ""))),
        ]
        metrics = [
            Metric(k, float(v), now, 0)
            for k, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in BENCH_PARAMS
        ]
        for key, points in (series or {}).items():
            metrics.extend(Metric(f"system/{key}", float(v), ts, step) for step, v, ts in points)
        for chunk in _chunks(params):
            client.log_batch(rid, params=chunk)
        client.log_batch(rid, tags=tags)
        for chunk in _chunks(metrics):
            client.log_batch(rid, metrics=chunk)
        client.set_terminated(rid, "FINISHED" if row.get("status") == "ok" else "FAILED")
    except Exception:
        client.set_terminated(rid, "FAILED")
        raise
    return rid


# --- Training runs (`repro train`, `repro scaling`) ------------------------------------------
# Logged from rank 0 inside the Ray Train worker (Train V2 rejects MLflowLoggerCallback), one
# writer per run. Step metrics are logged only once no restart can re-run the step (committed
# by a checkpoint, or the run finished), so every step appears exactly once.

TRAIN_EXPERIMENT = "train"  # EXPERIMENT_PREFIX + this = "repro/train"
SCALING_EXPERIMENT = "scaling"  # "repro/scaling"
TRAIN_RUN_TAG = "repro.train_run"
TRAIN_STEP_METRICS = ("loss", "step_s", "data_s", "images_per_s")


def absolute_tracking_uri(uri: str) -> str:
    """A relative sqlite path made absolute: Ray workers run in another working directory."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return uri


def open_train_run(uri: str, run_name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
    """The MLflow run of training run ``run_name`` in "repro/train": the existing one when the
    training run resumes (same name), else a new one. Returns its id."""
    from mlflow.entities import Param, RunTag

    client = _client(uri)
    exp_id = _experiment_id(client, uri, TRAIN_EXPERIMENT)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`{TRAIN_RUN_TAG}` = '{run_name}'", max_results=1
    )
    if found:
        rid = found[0].info.run_id
        client.update_run(rid, status="RUNNING")
    else:
        rid = _create_run(client, exp_id, run_name=run_name).info.run_id
        for chunk in _chunks([Param(k, str(v)[:6000]) for k, v in params.items()]):
            client.log_batch(rid, params=chunk)
    all_tags = {TRAIN_RUN_TAG: run_name, **tags}
    client.log_batch(rid, tags=[RunTag(k, str(v)[:7000]) for k, v in all_tags.items()])
    return rid


def logged_train_steps(uri: str, run_id: str) -> set[int]:
    return {m.step for m in _client(uri).get_metric_history(run_id, "loss")}


def log_train_steps(uri: str, run_id: str, entries: list[dict[str, Any]]) -> None:
    """Per-step metrics (TRAIN_STEP_METRICS) of history ``entries`` with their step numbers."""
    from mlflow.entities import Metric

    metrics = [
        Metric(key, float(e[key]), int(e.get("time", 0) * 1000), int(e["step"]))
        for e in entries
        for key in TRAIN_STEP_METRICS
        if key in e
    ]
    client = _client(uri)
    for chunk in _chunks(metrics):
        client.log_batch(run_id, metrics=chunk)


def close_train_run(
    uri: str, run_id: str, summary: dict[str, float], tags: dict[str, str], status: str
) -> None:
    from mlflow.entities import Metric, RunTag

    client = _client(uri)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in summary.items()],
        tags=[RunTag(k, str(v)[:7000]) for k, v in tags.items()],
    )
    client.set_terminated(run_id, status)


def find_train_run(uri: str, run_name: str) -> dict[str, Any] | None:
    """A training run's params, tags, status and per-step metric history, read back."""
    client = _client(uri)
    exp = client.get_experiment_by_name(EXPERIMENT_PREFIX + TRAIN_EXPERIMENT)
    if exp is None:
        return None
    found = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{TRAIN_RUN_TAG}` = '{run_name}'"
    )
    if not found:
        return None
    run = found[0]
    history = {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in TRAIN_STEP_METRICS
    }
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": dict(run.data.metrics),
        "history": history,
    }


def log_scaling(
    uri: str,
    name: str,
    rows: list[dict[str, Any]],
    params: dict[str, Any],
    csv_path: str | None = None,
) -> str:
    """One scaling sweep as one run of "repro/scaling": each worker count's numbers as metrics
    with step = worker count, the CSV as an artifact. Returns the run id."""
    from mlflow.entities import Metric, Param

    client = _client(uri)
    exp_id = _experiment_id(client, uri, SCALING_EXPERIMENT)
    rid = _create_run(client, exp_id, run_name=name).info.run_id
    try:
        metrics = [
            Metric(k, float(row[k]), 0, int(row["workers"]))
            for row in rows
            for k in ("images_per_s", "step_s_median", "efficiency", "data_s_fraction")
            if isinstance(row.get(k), int | float)
        ]
        for chunk in _chunks([Param(k, str(v)[:6000]) for k, v in params.items()]):
            client.log_batch(rid, params=chunk)
        for chunk in _chunks(metrics):
            client.log_batch(rid, metrics=chunk)
        client.log_dict(rid, {"rows": rows}, "scaling.json")
        if csv_path:
            client.log_artifact(rid, csv_path)
        client.set_terminated(rid, "FINISHED")
    except Exception:
        client.set_terminated(rid, "FAILED")
        raise
    return rid


DEMO_EXPERIMENT = "demos"  # "repro/demos"


def log_demo(
    uri: str,
    name: str,
    metrics: dict[str, float],
    params: dict[str, Any],
    artifacts: list[str],
) -> str:
    """One embedded demonstration (digits, detection) as one run of "repro/demos": its headline
    numbers as metrics, its settings as params, its JSON and CSV as artifacts."""
    from mlflow.entities import Metric, Param

    client = _client(uri)
    exp_id = _experiment_id(client, uri, DEMO_EXPERIMENT)
    rid = _create_run(client, exp_id, run_name=name, tags={"repro.demo": name}).info.run_id
    try:
        stamp = int(time.time() * 1000)
        found = [Metric(k, float(v), stamp, 0) for k, v in metrics.items()]
        for chunk in _chunks([Param(k, str(v)[:6000]) for k, v in params.items()]):
            client.log_batch(rid, params=chunk)
        for chunk in _chunks(found):
            client.log_batch(rid, metrics=chunk)
        for path in artifacts:
            client.log_artifact(rid, path)
        client.set_terminated(rid, "FINISHED")
    except Exception:
        client.set_terminated(rid, "FAILED")
        raise
    return rid
