"""The speed suite's knobs, with the papers' values as defaults, and the device it runs on.

Resolution: ``REPRO_SPEED_<FIELD>`` in the environment, then the ``speed:`` mapping of
params.yaml, then the defaults below. Tests shrink ``proposals``, the image and the scale; a
full-size R-CNN pass (2000 VGG-16 forward passes) takes about 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from repro.errors import ReproError

ENV_PREFIX = "REPRO_SPEED_"


@dataclass(frozen=True)
class SpeedSettings:
    proposals: int = 2000  # boxes per image: R-CNN's and Fast R-CNN's ~2k selective search boxes
    image_height: int = 375  # one synthetic VOC-sized image (500 x 375, VOC's most common size)
    image_width: int = 500
    scale: int = 600  # Fast/Faster R-CNN test scale: shorter side, longer side at most max_size
    max_size: int = 1000
    rcnn_batch: int = 64  # crops per CNN forward in R-CNN: a memory knob, not a paper value
    warmup: int = 1  # untimed steps before timing each pipeline
    repeats: int = 3  # timed repeats; their median is the result
    min_repeat_s: float = 1.0  # fast steps are repeated within one repeat to last about this
    budget_s: float = 300.0  # fewer repeats (at least 1) where a pipeline would take longer
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("seed", "warmup") and value <= 0:
                raise ReproError(
                    f"speed setting {f.name} must be positive, got {value}.",
                    f"set {ENV_PREFIX}{f.name.upper()} or params.yaml speed.{f.name} to a "
                    "positive number (or remove it for the paper's value).",
                )
        if self.warmup < 0:
            raise ReproError(
                f"speed setting warmup must be 0 or more, got {self.warmup}.",
                f"set {ENV_PREFIX}WARMUP to 0 or more.",
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def resolve(
        cls, params: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> SpeedSettings:
        """Defaults, overridden by params.yaml's ``speed:`` mapping, then by the environment."""
        env = dict(os.environ if env is None else env)
        given: dict[str, Any] = dict((params or {}).get("speed") or {})
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ReproError(
                f"params.yaml speed: has unknown settings {unknown}.",
                f"use only {', '.join(names)}.",
            )
        for name in names:
            if ENV_PREFIX + name.upper() in env:
                given[name] = env[ENV_PREFIX + name.upper()]
        out: dict[str, Any] = {}
        for name, raw in given.items():
            kind = float if isinstance(getattr(cls, name), float) else int
            try:
                out[name] = kind(raw)
            except (TypeError, ValueError):
                raise ReproError(
                    f"speed setting {name}={raw!r} is not a number.",
                    f"set {ENV_PREFIX}{name.upper()} or params.yaml speed.{name} to a "
                    f"{kind.__name__}.",
                ) from None
        return replace(cls(), **out)


def describe_device(device: Any) -> str:
    """'cpu (AMD EPYC, 2 threads)' or 'cuda (NVIDIA H100 80GB HBM3)': what every row names."""
    import torch

    from repro.runtime.device import cpu_name

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"


def default_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
