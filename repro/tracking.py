"""MLflow: one experiment per paper, one run per measured model. The only module importing mlflow.

Runs carry every result row as a ``results.json`` artifact and tags (paper, tables, rows,
per-claim claimed/measured/verdict), so ``repro report --from mlflow`` rebuilds the report from
MLflow alone. Logging happens in the driver, one writer, because sqlite locks under many writers.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from repro.errors import ReproError

EXPERIMENT_PREFIX = "repro/"
VERDICT_ORDER = ("error", "deviates", "reproduced", "not-run")
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


def _client(uri: str) -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
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
) -> str:
    """Log one paper's measurements. ``groups``: one dict per measured model with keys
    model_key, model, kwargs, input_size, summary (metrics) and rows (result dicts).
    Returns the session id that tags every run of this call."""
    from mlflow.entities import Metric, Param, RunTag

    client = _client(uri)
    exp_id = _experiment_id(client, uri, paper)
    session = uuid.uuid4().hex[:12]
    for g in groups:
        rows = g["rows"]
        run = client.create_run(exp_id, run_name=g["model_key"] or "claims without a model")
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
            filter_string="attributes.status = 'FINISHED'",
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
