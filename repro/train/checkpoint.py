"""Checkpoints: model, optimizer, RNG state, the next step and the history so far.

One directory per checkpoint, written by every rank under its own file names (Ray Train merges
the ranks' directories into one):
- ``trainer.json`` (rank 0): next step, history, strategy and world size;
- ``model.pt`` (rank 0) for none/ddp/fsdp: the full, unsharded model and optimizer state
  (FSDP's gathered with torch.distributed.checkpoint.state_dict), loadable by a single device;
- ``model_rank{r}.pt`` for towers/pipeline, where each rank holds different layers;
- ``rng_rank{r}.pt``: each rank's RNG state (dropout masks continue as without the restart).

Every file is read with ``weights_only=True``: tensors and plain containers only, so a
checkpoint that carries code is refused, never run. A resume takes the newest checkpoint whose
files all read back (:func:`newest_readable`); a truncated or corrupt newest one is skipped, and
the run says so, resuming from the one before.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from repro.errors import ReproError
from repro.train.parallelize import ParallelModel

if TYPE_CHECKING:
    from repro.train.session import WorkerSession

TRAINER_FILE = "trainer.json"
MODEL_FILE = "model.pt"


def _per_rank(pm: ParallelModel) -> bool:
    return pm.strategy in ("towers", "pipeline")


def _full_fsdp(pm: ParallelModel) -> bool:
    return pm.strategy == "fsdp" and pm.world > 1


def save_checkpoint(
    directory: Path,
    pm: ParallelModel,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
) -> None:
    """Write this rank's share of a checkpoint into ``directory`` (collective under FSDP)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if pm.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(pm.device)
    torch.save(rng, directory / f"rng_rank{pm.rank}.pt")
    if _full_fsdp(pm):
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_sd, optim_sd = get_state_dict(pm.base, optimizer, options=options)
        if pm.rank == 0:
            torch.save({"model": model_sd, "optimizer": optim_sd}, _model(directory, pm))
    elif _per_rank(pm) or pm.rank == 0:
        state = {"model": pm.base.state_dict(), "optimizer": optimizer.state_dict()}
        torch.save(state, _model(directory, pm))
    if pm.rank == 0:
        (directory / TRAINER_FILE).write_text(json.dumps(trainer_state))


def persist(
    session: WorkerSession,
    pm: ParallelModel,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    metrics: dict[str, Any],
    name: str,
) -> str:
    """A checkpoint written to a temporary folder and handed to ``session`` as ``name`` (every
    rank calls this); returns where it was persisted."""
    with tempfile.TemporaryDirectory(prefix="repro-ckpt-") as tmp:
        save_checkpoint(Path(tmp), pm, optimizer, trainer_state)
        return session.report(metrics, Path(tmp), name)


def _model(directory: Path, pm: ParallelModel) -> Path:
    return directory / (f"model_rank{pm.rank}.pt" if _per_rank(pm) else MODEL_FILE)


def read_trainer_state(directory: Path) -> dict[str, Any]:
    path = directory / TRAINER_FILE
    if not path.exists():
        raise ReproError(f"checkpoint {directory} has no {TRAINER_FILE}; it was not written here.")
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReproError(f"checkpoint file {path} cannot be read ({exc}).") from None
    if not isinstance(state, dict):
        raise ReproError(f"checkpoint file {path} holds {type(state).__name__}, not a state.")
    return state


def _load(path: Path, map_location: Any = "cpu") -> Any:
    return torch.load(path, map_location=map_location, weights_only=True)


def problem(directory: Path) -> str | None:
    """Why checkpoint ``directory`` cannot be resumed from, or None when every file reads back.
    Every rank checks every file, so all ranks take the same checkpoint."""
    f = directory
    try:
        read_trainer_state(directory)
        files = sorted(directory.glob("*.pt"))
        if not any(f.name.startswith("model") for f in files):
            return f"no {MODEL_FILE} or model_rank*.pt"
        for f in files:
            _load(f)
    except ReproError as exc:
        return exc.cause
    except pickle.UnpicklingError:
        return f"{f.name}: not plain tensors (corrupt, or carries code: refused by weights_only)"
    except Exception as exc:  # whatever torch/pickle raise on truncated or hostile bytes
        text = str(exc).strip().splitlines()
        return f"{f.name}: {type(exc).__name__}: {text[0][:200] if text else ''}"
    return None


@contextlib.contextmanager
def newest_readable(session: WorkerSession) -> Iterator[tuple[Path | None, list[str]]]:
    """The newest checkpoint of ``session`` that reads back, and one line per newer checkpoint
    skipped because it did not (printed to stderr too: the run resumes from an earlier step)."""
    skipped: list[str] = []
    with session.checkpoint_dirs() as candidates:
        for directory in candidates:
            why = problem(directory)
            if why is None:
                if skipped and session.rank == 0:
                    print(
                        f"resuming from {directory.name}: newer checkpoint(s) unreadable "
                        f"({'; '.join(skipped)}).",
                        file=sys.stderr,
                    )
                yield directory, skipped
                return
            skipped.append(f"{directory.name}: {why}")
        if skipped:
            raise ReproError(
                f"no checkpoint of {session.run_dir} reads back: {'; '.join(skipped)}.",
                "delete the broken checkpoint folders to start the run over, or give the run a "
                "new --name.",
            )
        yield None, skipped


def load_checkpoint(
    directory: Path, pm: ParallelModel, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore this rank's model, optimizer and RNG from ``directory``; returns the trainer
    state (every rank reads it, so all agree on the step to resume at)."""
    state = read_trainer_state(directory)
    if state.get("parallel") != pm.strategy or (_per_rank(pm) and state.get("world") != pm.world):
        raise ReproError(
            f"checkpoint {directory} was written by --parallel {state.get('parallel')} on "
            f"{state.get('world')} workers; this run is --parallel {pm.strategy} on {pm.world}.",
            "resume with the same --parallel and --workers, or give the run a new --name.",
        )
    if _full_fsdp(pm):
        saved = _load(_model(directory, pm))
        set_state_dict(
            pm.base,
            optimizer,
            model_state_dict=saved["model"],
            optim_state_dict=saved["optimizer"],
            options=StateDictOptions(full_state_dict=True),
        )
    else:
        saved = _load(_model(directory, pm), pm.device)
        pm.base.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
    rng_file = directory / f"rng_rank{pm.rank}.pt"
    if rng_file.exists():
        rng = _load(rng_file)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and pm.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], pm.device)
    return state
