"""Load trained weights into a registered model, safely and with errors that say what differs.

Files are read with ``torch.load(..., weights_only=True)``: tensors and plain containers only,
never pickled code. Accepted layouts: a plain state dict, or a dict holding it under
"state_dict", "model" or "model_state" (common checkpoint layouts); "module." (DDP) and
"_orig_mod." (torch.compile) key prefixes are stripped.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from repro.errors import ReproError

CHECKPOINT_KEYS = ("state_dict", "model", "model_state")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")

SAVE_STATE_DICT = (
    "load the file once where you trust it, with torch.load(path, weights_only=False), and "
    "save only the weights: torch.save(model.state_dict(), 'weights.pt')."
)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise ReproError(f"weights file {path} does not exist.", "pass the path to a .pt file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ReproError(
                f"{path} holds a pickled {found.group(1)} (Python code, e.g. a whole "
                "nn.Module, not only tensors), and repro refuses to unpickle code from a "
                "weights file.",
                SAVE_STATE_DICT,
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        raise ReproError(
            f"{path} is not a readable torch weights file "
            f"({detail.group(1).strip() if detail else 'unpickling failed'}).",
            "pass a file written by torch.save(model.state_dict(), path).",
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch's zip and pickle readers raise any type on damaged bytes
        raise ReproError(
            f"{path} is not a readable torch weights file ({type(exc).__name__}: "
            f"{str(exc)[:200]}).",
            "pass a file written by torch.save(model.state_dict(), path); a truncated file "
            "means the copy or the save did not finish.",
        ) from None


def _state_dict(data: Any, path: Path) -> dict[str, Any]:
    if isinstance(data, Mapping):
        for key in CHECKPOINT_KEYS:
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        kind = type(data).__name__
        keys = ", ".join(map(str, list(data)[:5])) if isinstance(data, Mapping) else ""
        raise ReproError(
            f"{path} holds a {kind}{f' with keys {keys}' if keys else ''}, not a state dict of "
            "tensors.",
            "save the weights with torch.save(model.state_dict(), path), or a checkpoint dict "
            f"holding them under one of {', '.join(CHECKPOINT_KEYS)}.",
        )
    out = {}
    for key, value in data.items():
        for prefix in STRIPPED_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _listing(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(model: Any, path: Path | str) -> dict[str, Any]:
    """Load ``path`` into ``model`` (strictly: every key, every shape). Returns {path, sha256,
    keys, tensors, parameters}. A ReproError names the first missing/unexpected keys and the
    shapes that differ, or says why the file cannot be read."""
    path = Path(path)
    state = _state_dict(_read(path), path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shapes differ: {_listing(shapes, 3)}")
        raise ReproError(
            f"weights {path} do not fit the model {type(model).__name__}: {'; '.join(parts)}.",
            "load weights saved from the same architecture and class count (e.g. num_classes "
            "must match the dataset's); weights of another implementation need their keys "
            "renamed to this model's (see `repro models --layers MODEL`).",
        )
    model.load_state_dict(state, strict=True)
    with open(path, "rb") as f:
        sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    return {
        "path": str(path),
        "sha256": sha256,
        "keys": len(state),
        "tensors": sum(int(v.numel()) for v in state.values()),
        "parameters": sum(int(p.numel()) for p in model.parameters()),
    }
