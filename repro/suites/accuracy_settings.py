"""Settings of the accuracy suite: params.yaml `accuracy:` and `weights:`, the environment
(REPRO_ACCURACY_*, REPRO_WEIGHTS_<MODEL>) and flags, in that order of precedence (flag first)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from repro.errors import ReproError

DEFAULTS: dict[str, Any] = {
    "workers": 1,  # Ray Train data-parallel workers per training run (0: in-process)
    "use_gpu": False,
    "seeds": 1,  # training runs per recipe; with 2 or more, verdicts use a confidence interval
    "epochs": None,  # override every recipe's epochs (e.g. a short trial run)
    "eval_limit": None,  # evaluate on the first N images only (a trial run; noted in results)
    "batch_size": None,  # override the recipe's global training batch (memory); noted in results
    "storage": "~/ray_results/repro-accuracy",
}


@dataclass(frozen=True)
class AccuracySettings:
    workers: int = 1
    use_gpu: bool = False
    seeds: int = 1
    epochs: float | None = None
    eval_limit: int | None = None
    batch_size: int | None = None
    storage: str = DEFAULTS["storage"]
    weights: dict[str, str] = field(default_factory=dict)  # model name -> state-dict file

    @classmethod
    def resolve(
        cls, params: dict[str, Any] | None = None, weights: list[str] | None = None
    ) -> AccuracySettings:
        section = dict((params or {}).get("accuracy") or {})
        unknown = set(section) - set(DEFAULTS)
        if unknown:
            raise ReproError(
                f"params.yaml accuracy: unknown key(s) {', '.join(sorted(map(str, unknown)))}.",
                f"use only {', '.join(DEFAULTS)}.",
            )
        values = {**DEFAULTS, **{k: v for k, v in section.items() if v is not None}}
        for key in DEFAULTS:
            env = os.environ.get(f"REPRO_ACCURACY_{key.upper()}")
            if env:
                values[key] = env
        try:
            settings = cls(
                workers=int(values["workers"]),
                use_gpu=str(values["use_gpu"]).lower() in ("1", "true", "yes"),
                seeds=int(values["seeds"]),
                epochs=float(values["epochs"]) if values["epochs"] is not None else None,
                eval_limit=int(values["eval_limit"]) if values["eval_limit"] is not None else None,
                batch_size=int(values["batch_size"]) if values["batch_size"] is not None else None,
                storage=str(values["storage"]),
            )
        except ValueError as exc:
            raise ReproError(
                f"params.yaml accuracy: a value is not a number: {exc}.",
                "give workers, seeds, eval_limit and batch_size as integers, epochs as a number.",
            ) from None
        if settings.seeds < 1 or settings.workers < 0:
            raise ReproError(
                "params.yaml accuracy: seeds must be at least 1 and workers at least 0.",
                "correct accuracy.seeds / accuracy.workers.",
            )
        return replace(settings, weights=resolve_weights(params, weights))


def resolve_weights(params: dict[str, Any] | None, flags: list[str] | None) -> dict[str, str]:
    """Model -> weights file from params.yaml `weights:`, REPRO_WEIGHTS_<MODEL>, and
    `--weights MODEL=PATH` flags (later ones win)."""
    found = {str(k): str(v) for k, v in ((params or {}).get("weights") or {}).items() if v}
    for key, value in os.environ.items():
        if key.startswith("REPRO_WEIGHTS_") and value:
            found[key.removeprefix("REPRO_WEIGHTS_").lower()] = value
    for flag in flags or []:
        model, sep, path = flag.partition("=")
        if not sep or not model or not path:
            raise ReproError(
                f"--weights {flag!r} is not of the form MODEL=PATH.",
                "pass e.g. --weights resnet50=/data/weights/resnet50.pt.",
            )
        found[model] = path
    for model, path in found.items():
        if not Path(path).expanduser().is_file():
            raise ReproError(
                f"the weights file for {model} ({path}) does not exist.",
                "correct the path in params.yaml weights:, REPRO_WEIGHTS_"
                f"{model.upper()} or --weights, or remove it to train by the paper's recipe.",
            )
    return {m: str(Path(p).expanduser().resolve()) for m, p in found.items()}
