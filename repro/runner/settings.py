"""One settings object for a run: repro.config's settings (flag, environment, params.yaml,
default) and what a run alone decides (where files go, whether MLflow and Ray are used)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from repro import config
from repro.config import AccuracySettings, Settings, SpeedSettings
from repro.errors import ReproError
from repro.suites import suite_names

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
    claims: tuple[str, ...] = ()  # claim ids to measure (--claims); empty: every claim
    resume: bool = False  # reuse papers written in out_dir in this configuration (--resume)
    speed: SpeedSettings | None = None  # None: params.yaml speed: and REPRO_SPEED_*
    accuracy: AccuracySettings | None = None  # None: params.yaml accuracy: and weights:
    # per paper: its MLflow session and parent run, opened before measuring (runner.log)
    mlflow_sessions: Mapping[str, str] = field(default_factory=dict)
    mlflow_parents: Mapping[str, str] = field(default_factory=dict)
    # the params file's settings; None: not read, ./params.yaml when a suite's knobs are needed
    params: Settings | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "suites", tuple(self.suites))
        object.__setattr__(self, "claims", tuple(self.claims))
        if self.out_dir is not None:
            object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.papers_dir is not None:
            object.__setattr__(self, "papers_dir", Path(self.papers_dir))

    @classmethod
    def resolve(
        cls,
        params_file: str | Path | None = None,
        *,
        out_dir: str | Path | None = DEFAULT_MEASUREMENTS,
        papers_dir: str | Path | None = None,
        no_mlflow: bool = False,
        no_ray: bool = False,
        claims: Sequence[str] = (),
        resume: bool = False,
        **flags: Any,
    ) -> RunSettings:
        """The settings of one run from the params file (default ./params.yaml if present),
        the environment and ``flags``, repro.config.load_settings's (None: not given)."""
        s = config.load_settings(params_file, **flags)
        chosen = s.suites or ["analytic"]
        unknown = [name for name in chosen if name not in suite_names()]
        if unknown and not flags.get("suites"):
            raise ReproError(
                f"{params_file or 'params.yaml'}, field suites: unknown suite {unknown[0]!r}.",
                f"use some of: {', '.join(suite_names())}.",
            )
        needs_accuracy = {"accuracy", "dataset"} & set(chosen) or flags.get("weights")
        return cls(
            suites=tuple(chosen),
            data_roots=s.data_roots,
            out_dir=out_dir,
            tracking_uri=None if no_mlflow else s.tracking_uri,
            ray_address=None if no_ray else s.ray_address,
            use_ray=not no_ray,
            papers_dir=papers_dir,
            claims=tuple(claims),
            resume=resume,
            speed=s.speed if "speed" in chosen else None,
            accuracy=s.accuracy_settings() if needs_accuracy else None,
            params=s,
        )

    @cached_property
    def speed_settings(self) -> SpeedSettings:
        """The speed suite's knobs: these settings', else params.yaml's and REPRO_SPEED_*."""
        return self.speed or (self.params or config.load_settings()).speed

    @cached_property
    def accuracy_settings(self) -> AccuracySettings:
        """The accuracy and dataset suites' knobs: these settings', else params.yaml's."""
        return self.accuracy or (self.params or config.load_settings()).accuracy_settings()
