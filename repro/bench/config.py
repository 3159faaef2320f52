"""What one benchmark configuration asks for, and the checks that fail before anything runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ReproError
from repro.runtime.vocabulary import PARALLEL, PRECISIONS

MODES = ("infer", "train")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_OUT = Path("benchmarks/results")
# --batch-size auto stops doubling here: a CPU run must finish, and a GPU search must end.
AUTO_BATCH_CAP = {"cpu": 512, "cuda": 8192}


@dataclass
class BenchConfig:
    model: str
    mode: str = "infer"
    batch_size: int | str = 32  # an int, or "auto": the largest batch that fits
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    workers: int = 1  # > 1: data-parallel training through repro.train.distributed
    parallel: str = "none"
    device: str = "auto"
    warmup: int = 3
    iters: int = 10
    repeats: int = 3
    data_root: str | None = None  # torchvision ImageFolder root; None: synthetic tensors
    loader_workers: int = 2  # DataLoader num_workers with data_root
    sample_interval_s: float = 0.1  # telemetry sampling period (NVML and host)
    max_batch: int | None = None  # cap of the auto search; None: AUTO_BATCH_CAP[device]
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def auto_batch(self) -> bool:
        return self.batch_size == "auto"

    @property
    def distributed(self) -> bool:
        return self.workers > 1 or self.parallel != "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise ReproError for anything the user can fix, before a model is built."""
        _choice("--mode", self.mode, MODES)
        _choice("--precision", self.precision, PRECISIONS)
        _choice("--parallel", self.parallel, PARALLEL)
        _choice("--device", self.device, DEVICES)
        if not self.auto_batch and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ReproError(
                f"--batch-size must be a positive integer or 'auto', not {self.batch_size!r}.",
                "pass e.g. --batch-size 32, or --batch-size auto to find the largest that fits.",
            )
        for flag, value, least in (
            ("--warmup", self.warmup, 0),
            ("--iters", self.iters, 1),
            ("--repeats", self.repeats, 1),
            ("--workers", self.workers, 1),
            ("--loader-workers", self.loader_workers, 0),
        ):
            if value < least:
                raise ReproError(f"{flag} must be at least {least}, not {value}.", f"fix {flag}.")
        if self.sample_interval_s <= 0:
            raise ReproError(
                f"the telemetry sampling interval must be positive, not {self.sample_interval_s}.",
                "pass e.g. --sample-interval 0.1.",
            )
        if self.max_batch is not None and self.max_batch < 1:
            raise ReproError(f"--max-batch must be positive, not {self.max_batch}.", "fix it.")
        if self.distributed and self.mode == "infer":
            raise ReproError(
                "inference is benchmarked on one device; --workers > 1 and --parallel apply to "
                "training.",
                "use --mode train for parallel runs, or drop --workers/--parallel.",
            )
        if self.distributed and self.auto_batch:
            raise ReproError(
                "--batch-size auto searches one device; it cannot size a parallel run.",
                "find the per-device batch with a single-device run, then pass the global batch.",
            )
        if self.data_root is not None and not Path(self.data_root).is_dir():
            raise ReproError(
                f"--data {self.data_root} is not a directory.",
                "pass the root of a torchvision ImageFolder (one sub-directory of images per "
                "class), or leave --data out to benchmark on synthetic tensors.",
            )


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ReproError(f"{flag} {value!r} is not one of {', '.join(allowed)}.", f"fix {flag}.")
