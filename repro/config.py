"""Settings: command-line flag, then environment, then params.yaml, then the embedded default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from repro.errors import ReproError, yaml_syntax_error

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def load_params(path: Path | str | None = None) -> dict[str, Any]:
    """Read params.yaml; a missing default file means the embedded defaults."""
    p = Path(path) if path else DEFAULT_PARAMS
    if not p.exists():
        if path:
            raise ReproError(f"params file {p} does not exist.", "pass an existing --params file.")
        return {}
    text = p.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise yaml_syntax_error(
            p, text, exc, "correct the YAML syntax at the line and column shown."
        ) from None
    if not isinstance(data, dict):
        raise ReproError(f"{p} must hold a mapping at the top level.", "see params.yaml.")
    return data


def ray_address(flag: str | None, params: dict[str, Any]) -> str | None:
    return flag or os.environ.get("RAY_ADDRESS") or (params.get("ray") or {}).get("address") or None


def tracking_uri(flag: str | None, params: dict[str, Any]) -> str:
    return (
        flag
        or os.environ.get("MLFLOW_TRACKING_URI")
        or (params.get("mlflow") or {}).get("tracking_uri")
        or DEFAULT_TRACKING_URI
    )


def data_roots(params: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (params.get("data") or {}).items() if v}


def suites(flag: list[str] | None, params: dict[str, Any]) -> list[str]:
    return list(flag or params.get("suites") or ["analytic"])


def add_settings_flags(parser: Any, *, ray: bool = True, mlflow: bool = True) -> None:
    """The flags every command that runs work shares, resolved by the functions above:
    --ray-address, --tracking-uri, --no-mlflow, --params."""
    if ray:
        parser.add_argument(
            "--ray-address",
            help="Ray cluster address (default: RAY_ADDRESS, "
            "params.yaml ray.address, else a local Ray with this machine's CPUs)",
        )
    if mlflow:
        parser.add_argument(
            "--tracking-uri",
            help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
            f"params.yaml mlflow.tracking_uri, else {DEFAULT_TRACKING_URI})",
        )
        parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    parser.add_argument("--params", help="params file (default: ./params.yaml if present)")
