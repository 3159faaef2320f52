"""What produced a run, in the tags MLflow's UI reads: the entry point and commit (the runs
table's Source and Version columns), the user, and the experiment kind that makes MLflow 3 open
an experiment on its runs instead of the GenAI overview.

``MlflowClient.create_run`` sets none of these (``mlflow.start_run`` would), so every run the
project creates gets them here, from the environment gathered once per process
(:func:`repro.environment.collect`).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

from repro.environment import collect

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # the "Model training" view, runs first


def entry_point(argv: list[str] | None = None) -> str:
    """'repro run', 'repro bench', 'pipelines/measure.py', 'python -m pytest': what was started."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0]:
        return "python"
    first = Path(argv[0])
    if first.name in ("repro", "__main__.py") and len(argv) > 1 and not argv[1].startswith("-"):
        return f"repro {argv[1]}"
    if first.parent.name == "pipelines":
        return f"pipelines/{first.name}"
    if first.name == "__main__.py":
        return f"python -m {first.parent.name}"
    return first.name


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, shortened: the entry point and its arguments."""
    argv = list(sys.argv if argv is None else argv)
    name = entry_point(argv)
    return " ".join([name, *argv[2 if name.startswith("repro ") else 1 :]])


def command_entry(command: str) -> str:
    """The entry point a :func:`command_line` starts with: 'repro run' of 'repro run vgg'."""
    words = command.split(" ")
    return " ".join(words[:2]) if words[0] == "repro" and len(words) > 1 else words[0]


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")


def source_tags(argv: list[str] | None = None) -> dict[str, str]:
    """mlflow.source.*, mlflow.user and the dirty flag, for every run this process creates."""
    env = collect()
    tags = {
        "mlflow.source.name": entry_point(argv),
        "mlflow.source.type": "LOCAL",
        "mlflow.user": user(),
        "repro.git_dirty": str(env.get("git_dirty", "")),
    }
    commit = env.get("git_commit", "")
    if commit and commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def mark_experiment(client: Any, experiment: Any) -> None:
    """Give ``experiment`` (an mlflow Experiment) the training kind, unless it has one: a store
    from before this tag is mended by the next run that logs into it."""
    if (experiment.tags or {}).get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


# MLflow 3.17's UI ignores mlflow.experimentKind while its GenAI / Model training switch is shown:
# the switch (kept in the browser's localStorage, GenAI at first) or this URL parameter decides.
RUNS_VIEW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui --backend-store-uri sqlite:///...` serves


def ui_link(uri: str, experiment_id: str) -> str:
    """The experiment's runs table in the MLflow UI: the server itself for an http(s) store,
    else where `mlflow ui` serves by default."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}?{RUNS_VIEW}"
