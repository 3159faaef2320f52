"""The pipeline's speed stage (`dvc repro speed`): whether it re-times the papers' speed claims on
this machine, and the folder the results go to, benchmarks/speed_claims/<environment>/.

Re-timing every paper takes about 10 minutes on 2 CPU cores (budget_s caps each pipeline), as
long as the rest of `make reproduce`, so on a CPU the default (`retime: auto`) keeps the
committed results and the report renders those; where torch sees a GPU it re-times.
``REPRO_RETIME_SPEED`` (auto / always / never) overrides params.yaml.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.errors import ReproError

RETIME = ("auto", "always", "never")
ENV_VAR = "REPRO_RETIME_SPEED"
SPEED_PAPERS = ("fast_rcnn", "faster_rcnn", "googlenet", "rcnn", "yolo_v1")
SPEED_ROOT = Path("benchmarks/speed_claims")


@dataclass(frozen=True)
class SpeedStage:
    retime: str = "auto"
    papers: tuple[str, ...] = SPEED_PAPERS
    root: Path = SPEED_ROOT

    @classmethod
    def resolve(
        cls,
        params: Mapping[str, Any] | None,
        flag: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> SpeedStage:
        """params.yaml's ``speed_stage:`` (``retime``, ``papers``, ``out``), then the
        environment, then ``flag`` (the stage's ``--retime``)."""
        given = dict((params or {}).get("speed_stage") or {})
        unknown = sorted(set(given) - {"retime", "papers", "out"})
        if unknown:
            raise ReproError(
                f"params.yaml speed_stage: has unknown settings {unknown}.",
                "use only retime, papers and out.",
            )
        raw = given.get("retime", "auto")
        if isinstance(raw, bool):  # YAML reads true / false as booleans
            raw = "always" if raw else "never"
        env = os.environ if env is None else env
        retime = str(flag or env.get(ENV_VAR) or raw).strip().lower()
        if retime not in RETIME:
            source = "--retime" if flag else ENV_VAR if env.get(ENV_VAR) else "speed_stage.retime"
            raise ReproError(
                f"{source} is {retime!r}, which is not a retime choice.",
                f"use one of {', '.join(RETIME)} (auto: re-time only where torch sees a GPU).",
            )
        papers = given.get("papers") or list(SPEED_PAPERS)
        if not isinstance(papers, list) or not all(isinstance(p, str) for p in papers):
            raise ReproError(
                f"params.yaml speed_stage.papers must be a list of paper keys, got {papers!r:.60}.",
                f"write it as a list, e.g. [{', '.join(SPEED_PAPERS)}].",
            )
        return cls(retime, tuple(papers), Path(given.get("out") or SPEED_ROOT))

    def decide(self, has_gpu: bool) -> tuple[bool, str]:
        """(re-time?, why) for a machine with or without a GPU."""
        if self.retime == "always":
            return True, "speed_stage.retime is always"
        if self.retime == "never":
            return False, "speed_stage.retime is never"
        if has_gpu:
            return True, "speed_stage.retime is auto and torch sees a GPU"
        return False, (
            "speed_stage.retime is auto and this machine has no GPU (re-timing on 2 CPU cores "
            f"takes about 10 minutes: set it to always, or {ENV_VAR}=always, to do it anyway)"
        )


def results_folder(root: Path | str, device: Any, precision: str = "fp32") -> Path:
    """root/<device>_<precision>_torch<version>: 'cpu-amd-epyc_fp32_torch2.14.1', as the bench
    files name their environment (the local build suffix, '+cu130', left out)."""
    import torch

    from repro.runtime.device import resolve_device

    device = torch.device(device)
    info = resolve_device("cuda" if device.type == "cuda" else "cpu")
    version = torch.__version__.split("+")[0]
    return Path(root) / f"{info.slug}_{precision}_torch{version}"


def committed_folders(root: Path | str) -> list[str]:
    """The hardware folders under ``root`` that hold results, for the stage's message."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.csv")))
