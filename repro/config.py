"""Settings: command-line flag, then environment, then params.yaml, then the embedded default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from repro.errors import ReproError, yaml_syntax_error
from repro.files import read_text

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def load_params(path: Path | str | None = None) -> dict[str, Any]:
    """Read params.yaml; a missing default file means the embedded defaults."""
    p = Path(path) if path else DEFAULT_PARAMS
    if not p.exists():
        if path:
            raise ReproError(f"params file {p} does not exist.", "pass an existing --params file.")
        return {}
    text = read_text(p)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise yaml_syntax_error(
            p, text, exc, "correct the YAML syntax at the line and column shown."
        ) from None
    if not isinstance(data, dict):
        raise ReproError(f"{p} must hold a mapping at the top level.", "see params.yaml.")
    _check_sections(p, text, data)
    return data


# What each top-level section of params.yaml holds (None: the section is left empty).
SECTION_TYPES: dict[str, type] = {
    "papers": list, "suites": list, "accuracy": dict, "weights": dict, "demos": dict,
    "ray": dict, "mlflow": dict, "data": dict, "speed": dict, "speed_stage": dict,
}  # fmt: skip
_STRING_FIELDS = {("ray", "address"), ("mlflow", "tracking_uri")}


def _line_of(text: str, key: str) -> str:
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{key}:"):
            return f", line {number}"
    return ""


def _check_sections(path: Path, text: str, data: dict[str, Any]) -> None:
    """Each known section has the shape the harness reads, so a damaged params file is an
    error naming the field here, not a crash where the value is first used."""
    for key, kind in SECTION_TYPES.items():
        value = data.get(key)
        if value is None:
            continue
        where = f"{path}{_line_of(text, key)}, field {key}"
        if not isinstance(value, kind):
            raise ReproError(
                f"{where}: expected a {'list' if kind is list else 'mapping'}, found "
                f"{type(value).__name__} {str(value)[:60]!r}.",
                f"restore the `{key}:` section (see the params.yaml in the repository).",
            )
        if kind is list and not all(isinstance(v, str) for v in value):
            raise ReproError(
                f"{where}: every entry must be a name, found {value!r:.80}.",
                f"write `{key}:` as a list of names, one `- name` a line.",
            )
        if key in ("data", "weights"):
            bad = [k for k, v in value.items() if v is not None and not isinstance(v, str)]
            if bad:
                raise ReproError(
                    f"{where}.{bad[0]}: expected a path, found {value[bad[0]]!r:.60}.",
                    "write a path (or leave it empty for a dataset that is not present).",
                )
    for section, name in _STRING_FIELDS:
        value = (data.get(section) or {}).get(name)
        if value is not None and not isinstance(value, str):
            raise ReproError(
                f"{path}{_line_of(text, section)}, field {section}.{name}: expected text, found "
                f"{value!r:.60}.",
                f'quote it, e.g. {name}: "..."',
            )


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
