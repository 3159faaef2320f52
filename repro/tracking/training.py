"""Training runs (`repro train`, recipes, the demos' fits) in experiment repro/train."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from repro.tracking.client import (
    EXPERIMENT_PREFIX,
    _chunks,
    _client,
    _create_run,
    _experiment_id,
    terminating,
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
) -> str:
    """The MLflow run of training run ``run_name`` in "repro/<experiment>": the existing one
    when the training run resumes (same name), else a new one. Returns its id."""
    from mlflow.entities import Param, RunTag

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
        for chunk in _chunks([Param(k, str(v)[:6000]) for k, v in params.items()]):
            client.log_batch(rid, params=chunk)
    all_tags = {TRAIN_RUN_TAG: run_name, **tags}
    client.log_batch(rid, tags=[RunTag(k, str(v)[:7000]) for k, v in all_tags.items()])
    return rid


def logged_train_steps(uri: str, run_id: str) -> set[int]:
    return {m.step for m in _client(uri).get_metric_history(run_id, "loss")}


def log_train_steps(
    uri: str, run_id: str, entries: list[dict[str, Any]], keys: tuple[str, ...] = TRAIN_STEP_METRICS
) -> None:
    """The ``keys`` of history ``entries`` (TRAIN_STEP_METRICS for `repro train`; a recipe's
    loss, lr, errors and images/s per epoch) as metrics with their step numbers."""
    from mlflow.entities import Metric

    metrics = [
        Metric(key, float(e[key]), int(e.get("time", 0) * 1000), int(e["step"]))
        for e in entries
        for key in keys
        if key in e
    ]
    client = _client(uri)
    for chunk in _chunks(metrics):
        client.log_batch(run_id, metrics=chunk)


def system_metrics(series: dict[str, list[tuple[int, float, int]]]) -> list[Any]:
    """MLflow metrics "system/<name>" of a sampler's series (name -> [(step, value, ms)]):
    where MLflow's own system-metrics monitor would put them, so the UI charts them alike."""
    from mlflow.entities import Metric

    return [
        Metric(f"system/{key}", float(v), ts, step)
        for key, points in series.items()
        for step, v, ts in points
    ]


def log_system_metrics(
    uri: str, run_id: str, series: dict[str, list[tuple[int, float, int]]]
) -> None:
    client = _client(uri)
    for chunk in _chunks(system_metrics(series)):
        client.log_batch(run_id, metrics=chunk)


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
    import mlflow
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
    from mlflow.entities import Metric, RunTag

    curve = {k: v for k, v in (last_point or {}).items() if k in summary}
    summary = {(f"final_{k}" if k in curve else k): v for k, v in summary.items()
               if curve.get(k) != v}  # fmt: skip
    client = _client(uri)
    stamp = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), stamp, step) for k, v in summary.items()],
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
    with terminating(client, rid):
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
    return rid
