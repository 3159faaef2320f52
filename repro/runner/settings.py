"""One settings object for a run, resolved once: command-line flag, then environment, then
params.yaml, then the embedded default (repro.config holds each rule)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from repro import config
from repro.errors import ReproError
from repro.suites.accuracy_settings import AccuracySettings
from repro.suites.speed_settings import SpeedSettings

DEFAULT_MEASUREMENTS = Path("reports/measurements")


@dataclass(frozen=True)
class RunSettings:
    """Everything `repro run` and the DVC measure stage decide before measuring."""

    suites: tuple[str, ...] = ("analytic",)
    data_roots: Mapping[str, str] = field(default_factory=dict)
    out_dir: Path | None = DEFAULT_MEASUREMENTS  # None: write no measurement files
    tracking_uri: str | None = None  # None: no MLflow
    ray_address: str | None = None  # None: a local Ray
    use_ray: bool = True  # False: every suite in this process
    num_cpus: int | None = None  # a local Ray's CPUs (default: the machine's)
    papers_dir: Path | None = None  # None: repro/papers
    speed: SpeedSettings | None = None  # None: params.yaml speed: and REPRO_SPEED_*
    accuracy: AccuracySettings | None = None  # None: params.yaml accuracy: and weights:
    # the params file's contents; None: not read, ./params.yaml when a suite's knobs are needed
    params: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "suites", tuple(self.suites))
        if self.out_dir is not None:
            object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.papers_dir is not None:
            object.__setattr__(self, "papers_dir", Path(self.papers_dir))

    @classmethod
    def resolve(
        cls,
        params_file: str | Path | None = None,
        *,
        suites: Sequence[str] | None = None,
        tracking_uri: str | None = None,
        no_mlflow: bool = False,
        ray_address: str | None = None,
        no_ray: bool = False,
        weights: Sequence[str] | None = None,
        seeds: int | None = None,
        out_dir: str | Path | None = DEFAULT_MEASUREMENTS,
        papers_dir: str | Path | None = None,
    ) -> RunSettings:
        """The settings of one run from its flags (None: not given) over the environment and
        the params file (``params_file``, default ./params.yaml if present)."""
        params = config.load_params(params_file)
        chosen = config.suites(list(suites) if suites else None, params)
        if not suites:
            from repro.suites import suite_names

            unknown = [name for name in chosen if name not in suite_names()]
            if unknown:
                raise ReproError(
                    f"{params_file or 'params.yaml'}, field suites: unknown suite {unknown[0]!r}.",
                    f"use some of: {', '.join(suite_names())}.",
                )
        speed = SpeedSettings.resolve(params) if "speed" in chosen else None
        accuracy = None
        if "accuracy" in chosen or "dataset" in chosen or weights:
            accuracy = AccuracySettings.resolve(params, list(weights) if weights else None)
            if seeds:
                if seeds < 1:
                    raise ReproError(f"--seeds {seeds} is below 1.", "pass --seeds 1 or more.")
                accuracy = dataclasses.replace(accuracy, seeds=seeds)
        return cls(
            suites=tuple(chosen),
            data_roots=config.data_roots(params),
            out_dir=Path(out_dir) if out_dir is not None else None,
            tracking_uri=None if no_mlflow else config.tracking_uri(tracking_uri, params),
            ray_address=None if no_ray else config.ray_address(ray_address, params),
            use_ray=not no_ray,
            papers_dir=Path(papers_dir) if papers_dir else None,
            speed=speed,
            accuracy=accuracy,
            params=params,
        )

    def replace(self, **changes: Any) -> RunSettings:
        return dataclasses.replace(self, **changes)

    @cached_property
    def speed_settings(self) -> SpeedSettings:
        """The speed suite's knobs: these settings', else params.yaml's and REPRO_SPEED_*."""
        return self.speed or SpeedSettings.resolve(self._params())

    @cached_property
    def accuracy_settings(self) -> AccuracySettings:
        """The accuracy and dataset suites' knobs: these settings', else params.yaml's."""
        return self.accuracy or AccuracySettings.resolve(self._params())

    def _params(self) -> dict[str, Any]:
        return dict(self.params) if self.params is not None else config.load_params()
