"""What a training run is asked to do and what it reports: `repro train`'s (shared by the
`scaling` suite and `repro bench --mode train --workers N`, the interface between them) and a
recipe training's (repro.train.fit, repro.train.detector_fit)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from repro.errors import ReproError
from repro.train.system_log import DEFAULT_INTERVAL_S


class Record:
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # the subclasses are dataclasses


@dataclass
class TrainConfig(Record):
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32  # global batch: split evenly across data-parallel workers
    steps: int = 10
    warmup_steps: int = 2  # excluded from throughput
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    parallel: str = "none"
    workers: int = 1  # Ray Train workers; 0 runs in-process (unit tests)
    use_gpu: bool = False
    microbatches: int = 4  # pipeline parallelism
    checkpoint_every: int = 0  # steps; 0: no checkpoints
    max_failures: int = 0  # Ray restarts the worker group this many times
    storage_path: str | None = None  # where Ray Train keeps checkpoints
    run_name: str | None = None
    tracking_uri: str | None = None  # rank 0 logs to MLflow inside the worker when set
    system_metrics_s: float = DEFAULT_INTERVAL_S  # CPU/memory/GPU sampling period; 0: none
    data_root: str | None = None  # ImageFolder root; None: synthetic batches
    num_classes: int | None = None
    input_size: list[int] | None = None  # CxHxW; None: the model's paper input size
    seed: int = 0
    ray_address: str | None = None  # join this Ray cluster; None: start Ray locally
    loader_workers: int = 2  # DataLoader processes per worker (ImageFolder data only)
    fault_step: int | None = None  # testing: rank 1 exits at this step, first attempt only

    def __post_init__(self) -> None:
        """The optimizer's numbers, checked where the flags become a config (torch's SGD would
        raise a bare ValueError on a negative rate, and train a NaN one to NaN)."""
        need(
            _is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0,
            f"--lr {self.lr!r} is not a finite positive learning rate.",
            "pass --lr a positive number, e.g. --lr 0.01.",
        )
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            need(
                _is_number(value) and math.isfinite(value) and value >= 0,
                f"{name} {value!r} is not a finite non-negative number.",
                f"set {name} to 0 or more.",
            )


@dataclass
class TrainResult(Record):
    config: dict[str, Any]
    history: list[dict[str, Any]]  # one dict per step: step, loss, step_s, images, data_s
    images_per_s: float  # global, warm-up steps excluded
    step_s_median: float
    data_s_fraction: float  # time waiting on the data loader / step time
    restarts: int = 0
    resumed_from_step: int | None = None
    resume_skipped: list[str] = field(default_factory=list)  # newer checkpoints that did not read
    checkpoint: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    overhead: dict[str, float] = field(default_factory=dict)  # Ray, MLflow seconds: not in images/s
    timed_steps: int = 0  # steps behind images_per_s (warm-up of every attempt excluded)
    checks: dict[str, Any] = field(default_factory=dict)  # per-rank parameter counts/checksums
    run_dir: str | None = None  # the run's directory under storage_path


@dataclass
class FitConfig(Record):
    recipe: dict[str, Any]  # Recipe.model_dump()
    data_root: str | None = None
    dataset: str | None = None  # None: the recipe's dataset
    workers: int = 1  # Ray Train workers; 0: in this process, without Ray
    use_gpu: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: float | None = None  # overrides the recipe's (tests, quick runs)
    max_steps_per_epoch: int | None = None
    num_classes: int | None = None  # None: the dataset's class count
    eval_split: str | None = None  # None: the recipe's eval_split
    precision: str = "fp32"
    run_name: str | None = None
    storage_path: str | None = None
    tracking_uri: str | None = None
    system_metrics_s: float = DEFAULT_INTERVAL_S  # CPU/memory/GPU sampling period; 0: none
    loader_workers: int = 2  # DataLoader processes per worker
    checkpoint_every_epoch: bool = True  # False: only after each seed's last epoch
    channels_last: bool = False
    ray_address: str | None = None
    torch_threads: int | None = None  # None: torch's default (Ray gives a worker 1 per CPU)
    log_model: bool = False  # each seed's trained network as an MLflow model (mlflow.pytorch)
    mlflow_experiment: str = "train"  # repro/<this>: where each seed's run goes
    mlflow_parent: str | None = None  # the run each seed's run is a child of (a demo's)


@dataclass
class FitResult(Record):
    seeds: list[dict[str, Any]]  # per seed: seed, top1_error, top5_error, epochs, history, ...
    environment: dict[str, Any]
    checkpoint: str | None  # the last seed's final weights (a state_dict file)
    run_dir: str
    overhead: dict[str, float]
    config: dict[str, Any]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def need(ok: bool, cause: str, fix: str) -> None:
    """A setting's check: ReproError(cause, fix) unless ``ok``."""
    if not ok:
        raise ReproError(cause, fix)
