"""Where a training worker runs: its rank, where checkpoints go, and how they come back.

``LocalSession`` runs one worker in this process without Ray (``workers == 0``) and keeps
checkpoints under ``run_dir`` itself; repro.execution.train has the Ray Train session.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from repro.execution.state import CHECKPOINT_PREFIX, KEEP_CHECKPOINTS  # Ray keeps as many


def checkpoint_name(next_step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{next_step:07d}"


class WorkerSession(Protocol):
    rank: int
    world_size: int
    local_rank: int
    run_dir: Path  # this run's directory (shared by all workers): markers, attempt counts

    def checkpoint_dirs(self) -> contextlib.AbstractContextManager[list[Path]]:
        """Every checkpoint still kept, newest first (a resume falls back along it)."""
        ...

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path, name: str) -> str:
        """Persist ``checkpoint_dir`` as checkpoint ``name``; every rank calls this equally.
        Returns where it was persisted."""
        ...


class LocalSession:
    rank = 0
    world_size = 1
    local_rank = 0

    def __init__(self, run_dir: Path, keep: int = KEEP_CHECKPOINTS) -> None:
        self.run_dir = run_dir
        self.keep = keep
        run_dir.mkdir(parents=True, exist_ok=True)

    def checkpoints(self) -> list[Path]:
        return sorted(p for p in self.run_dir.glob(CHECKPOINT_PREFIX + "*") if p.is_dir())

    @contextlib.contextmanager
    def checkpoint_dirs(self) -> Iterator[list[Path]]:
        yield self.checkpoints()[::-1]

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path, name: str) -> str:  # noqa: ARG002
        target = self.run_dir / name
        tmp = self.run_dir / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint_dir, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # a checkpoint is either complete or absent
        for old in self.checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return str(target)
