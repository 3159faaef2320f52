"""Training runs (`repro train`, recipes, the demos' fits) in experiment repro/train, and
:class:`TrainingRun`, the one logger every training writes through.

A store that fails mid-training is met the same way everywhere: the training goes on, the user
is warned once, and what could not be logged (the run's parameters, tags, dataset inputs, the
points of its curves and its closing numbers) is kept in the spool (repro.tracking.spool) for
`repro sync` to replay. System metrics are bookkeeping and are not spooled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from repro.tracking.client import (
    EXPERIMENT_PREFIX,
    Point,
    StoreCalls,
    _client,
    _create_run,
    _experiment_id,
    log_batch,
    log_run,
    save_entry,
)

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


def open_train_run(
    uri: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    experiment: str = TRAIN_EXPERIMENT,
    datasets: list[dict[str, Any]] | None = None,
) -> tuple[str, set[int]]:
    """The MLflow run of training run ``run_name`` in "repro/<experiment>": the existing one
    when the training run resumes (same name), else a new one. Returns its id and the steps it
    holds; ``datasets`` become its inputs while it holds none (a resumed run has them)."""
    client = _client(uri)
    exp_id = _experiment_id(client, uri, experiment)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`{TRAIN_RUN_TAG}` = '{run_name}'", max_results=1
    )
    if found:
        rid = found[0].info.run_id
        client.update_run(rid, status="RUNNING")
    else:
        rid = _create_run(client, exp_id, run_name=run_name).info.run_id
        log_batch(client, rid, params)
    log_batch(client, rid, tags={TRAIN_RUN_TAG: run_name, **tags})
    logged = {m.step for m in client.get_metric_history(rid, "loss")}
    if datasets and not logged:
        log_datasets(uri, rid, datasets)
    return rid, logged


def log_train_steps(uri: str, run_id: str, points: list[dict[str, Any]]) -> None:
    """Each of ``points`` ({step, time, metric: value}) as metrics at its step."""
    metrics = [
        (key, p[key], int(p.get("time", 0) * 1000), int(p["step"]))
        for p in points
        for key in sorted(p.keys() - {"step", "time"})
    ]
    log_batch(_client(uri), run_id, metrics=metrics)


def system_metrics(series: dict[str, list[tuple[int, float, int]]]) -> list[Point]:
    """MLflow metrics "system/<name>" of a sampler's series (name -> [(step, value, ms)]):
    where MLflow's own system-metrics monitor would put them, so the UI charts them alike."""
    return [
        (f"system/{key}", v, ts, step) for key, points in series.items() for step, v, ts in points
    ]


def log_system_metrics(
    uri: str, run_id: str, series: dict[str, list[tuple[int, float, int]]]
) -> None:
    log_batch(_client(uri), run_id, metrics=system_metrics(series))


def logged_system_steps(uri: str, run_id: str) -> int:
    """The step the run's next system sample takes: one past the last logged (0 for a new run),
    so a resumed training run continues its series instead of overwriting them."""
    client = _client(uri)
    keys = [k for k in client.get_run(run_id).data.metrics if k.startswith("system/")]
    steps = [m.step for key in keys for m in client.get_metric_history(run_id, key)]
    return max(steps) + 1 if steps else 0


def log_datasets(uri: str, run_id: str, datasets: list[dict[str, Any]]) -> None:
    """Each of ``datasets`` ({name, context, digest, source, images}) as an MLflow dataset input
    of the run, its split ("train", "eval") as the input's context."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for d in datasets:
        source = CodeDatasetSource({"source": str(d.get("source") or "unknown")})
        dataset = MetaDataset(source=source, name=str(d["name"]), digest=str(d["digest"]))
        tags = [InputTag("mlflow.data.context", str(d["context"]))]
        if d.get("images") is not None:
            tags.append(InputTag("repro.images", str(d["images"])))
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=tags))
    _client(uri).log_inputs(run_id, datasets=inputs)


def log_torch_model(uri: str, run_id: str, model: Any, example: Any) -> None:
    """``model`` (an nn.Module) as the run's MLflow model "model", with the signature of
    ``example`` (an input batch) and its output, so ``mlflow.pytorch.load_model`` gives it back.
    Requirements are given, not inferred (inference imports half the environment)."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        output = model(example)
    signature = infer_signature(example.numpy(), output.numpy())
    _client(uri)  # points the fluent API at ``uri``
    with mlflow.start_run(run_id=run_id, nested=True):
        mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )


def close_train_run(
    uri: str,
    run_id: str,
    summary: dict[str, float],
    tags: dict[str, str],
    status: str,
    step: int = 0,
    last_point: dict[str, Any] | None = None,
) -> None:
    """The run's final numbers (at ``step``: the last epoch's, so a curve of the same metric
    does not gain a point at 0), its closing tags, and its end. ``last_point``: the curve's
    last logged numbers; a final number equal to its curve's last point is that point already
    and is not logged again, one that differs (another evaluation protocol) is logged as
    ``final_<name>``, so no curve has two points at one step."""
    curve = {k: v for k, v in (last_point or {}).items() if k in summary}
    summary = {(f"final_{k}" if k in curve else k): v for k, v in summary.items()
               if curve.get(k) != v}  # fmt: skip
    client = _client(uri)
    stamp = int(time.time() * 1000)
    log_batch(client, run_id, tags=tags, metrics=[(k, v, stamp, step) for k, v in summary.items()])
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

    def fill(client: Any, rid: str) -> None:
        metrics = [
            (k, row[k], 0, int(row["workers"]))
            for row in rows
            for k in ("images_per_s", "step_s_median", "efficiency", "data_s_fraction")
            if isinstance(row.get(k), int | float)
        ]
        log_batch(client, rid, params, metrics=metrics)
        client.log_dict(rid, {"rows": rows}, "scaling.json")
        if csv_path:
            client.log_artifact(rid, csv_path)

    return log_run(uri, SCALING_EXPERIMENT, name, None, fill)


class SystemSeries(Protocol):
    """A sampler of the host's (and GPU's) system metrics (repro.train.system_log)."""

    def take(self, first_step: int) -> tuple[dict[str, list[tuple[int, float, int]]], int]: ...

    def stop(self) -> None: ...


def _numbers(entry: dict[str, Any], keys: Iterable[str]) -> dict[str, float]:
    return {k: entry[k] for k in keys if isinstance(entry.get(k), int | float)}


class TrainingRun:
    """One MLflow training run, opened (or reopened, by name, when the training resumes) on
    creation; with ``uri`` None every method does nothing. A step is logged once: points whose
    step the run holds already are skipped. ``calls``: its calls to the store (their time,
    ``calls.seconds``, is the logging overhead)."""

    def __init__(
        self,
        uri: str | None,
        name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        experiment: str = TRAIN_EXPERIMENT,
        datasets: list[dict[str, Any]] | None = None,
        system: Callable[[], SystemSeries] | None = None,
    ) -> None:
        self.uri, self.name, self.experiment = uri, name, experiment
        self.params, self.tags = params, tags
        self.run_id: str | None = None
        self.logged: set[int] = set()
        self.last_point: dict[str, Any] = {}
        self.calls = StoreCalls(uri, f"MLflow training run {name}", "training goes on")
        self.unlogged: list[dict[str, Any]] = []
        self.datasets = list(datasets or [])  # not logged yet
        self.system: SystemSeries | None = None
        self.system_step = 0
        self.closed: dict[str, Any] | None = None
        self.spool_path: Path | None = None
        if uri is None:
            return
        self.calls(self._open)
        if system is not None and self.run_id is not None:
            self.system = system()

    @property
    def active(self) -> bool:
        return self.uri is not None

    def _open(self) -> None:
        assert self.uri is not None
        self.run_id, self.logged = open_train_run(
            self.uri, self.name, self.params, self.tags, self.experiment, self.datasets
        )
        self.datasets = []
        self.system_step = logged_system_steps(self.uri, self.run_id)

    def log(self, entries: list[dict[str, Any]], keys: tuple[str, ...], step: str = "step") -> None:
        """The ``keys`` of ``entries`` as metrics at step ``entry[step]``, those not logged."""
        if not self.active:
            return
        points = [
            {"step": int(e[step]), "time": e.get("time", 0), **_numbers(e, keys)}
            for e in entries
            if int(e[step]) not in self.logged
        ]
        if not points:
            return
        self.last_point = points[-1]
        if self.calls(lambda: log_train_steps(str(self.uri), str(self.run_id), points)):
            self.logged.update(p["step"] for p in points)
            self._flush_system()
        else:
            self.unlogged += points
            self._spool()

    def _flush_system(self) -> None:
        if self.system is None or self.calls.down:
            return
        series, count = self.system.take(self.system_step)
        self.system_step += count
        if series:
            self.calls(lambda: log_system_metrics(str(self.uri), str(self.run_id), series))

    def log_model(self, model: Any, example: Any) -> str | None:
        """``model`` as the run's MLflow model; why not, when it could not be."""
        if not self.active or self.calls.down:
            return None
        try:
            log_torch_model(str(self.uri), str(self.run_id), model, example)
        except Exception as exc:  # noqa: BLE001 - the trained numbers are logged regardless
            return f"{type(exc).__name__}: {str(exc)[:300]}"
        return None

    def close(
        self,
        summary: dict[str, float],
        tags: dict[str, str],
        status: str = "FINISHED",
        step: int | None = None,
    ) -> None:
        """The final numbers (at ``step``; None: the last logged step), closing tags and end."""
        if not self.active:
            return
        if self.system is not None:
            self.system.stop()
            self._flush_system()
            self.system = None
        if step is None:
            step = max(self.logged | {p["step"] for p in self.unlogged}, default=0)
        self.closed = closed = {
            "summary": summary,
            "tags": tags,
            "status": status,
            "step": step,
            "last_point": self.last_point,
        }
        if not self.calls(lambda: close_train_run(str(self.uri), str(self.run_id), **closed)):
            self._spool()

    def _spool(self) -> None:
        """What the store has not got, as one spool file (rewritten as more piles up)."""
        fields = {
            "run_name": self.name,
            "experiment": self.experiment,
            "params": {k: str(v) for k, v in self.params.items()},
            "tags": self.tags,
            "datasets": self.datasets,
            "points": self.unlogged,
            "close": self.closed,
        }
        self.spool_path = save_entry(
            "train_run",
            str(self.uri),
            self.calls.down,
            fields,
            f"train-{self.name}",
            self.spool_path,
        )


def replay_run(uri: str, entry: dict[str, Any]) -> None:
    """A spooled training run (TrainingRun's) logged: opened by name (so twice is once), its
    missing points, inputs and end."""
    name, experiment = entry["run_name"], entry["experiment"]
    params, tags, datasets = entry["params"], entry["tags"], entry.get("datasets")
    rid, logged = open_train_run(uri, name, params, tags, experiment, datasets)
    points = [p for p in entry.get("points", []) if p["step"] not in logged]
    if points:
        log_train_steps(uri, rid, points)
    if entry.get("close"):
        close_train_run(uri, rid, **entry["close"])
