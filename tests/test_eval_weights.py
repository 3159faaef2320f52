"""load_weights: state dicts and checkpoint layouts load; mismatches and pickled code refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from repro.errors import ReproError
from repro.evaluation.weights import load_weights
from repro.models import build_model


@pytest.fixture()
def trained() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("lenet5").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # differ from any fresh initialization
    return model


def _fresh() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("lenet5").eval()


def test_state_dict_round_trip_gives_equal_outputs(trained, tmp_path: Path) -> None:
    path = tmp_path / "lenet5.pt"
    torch.save(trained.state_dict(), path)
    model = _fresh()
    x = torch.rand(2, 1, 32, 32)
    assert not torch.equal(model(x), trained(x))
    summary = load_weights(model, path)
    assert torch.equal(model(x), trained(x))
    assert summary["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary["keys"] == len(trained.state_dict())
    assert summary["parameters"] == 60_000  # LeNet-5's trainable parameters


def test_checkpoint_layouts_and_ddp_prefix(trained, tmp_path: Path) -> None:
    ddp = {f"module.{k}": v for k, v in trained.state_dict().items()}
    path = tmp_path / "ckpt.pt"
    torch.save({"model_state": ddp, "epoch": 90, "optimizer": {"lr": 0.01}}, path)
    model = _fresh()
    load_weights(model, path)
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(model(x), trained(x))


def test_mismatched_keys_and_shapes_are_named(trained, tmp_path: Path) -> None:
    state = dict(trained.state_dict())
    first = next(iter(state))
    state["head.extra"] = torch.zeros(3)
    state.pop(first)
    name, tensor = next((k, v) for k, v in state.items() if v.dim() >= 1 and k != "head.extra")
    state[name] = torch.zeros(tensor.shape[0] + 1, *tensor.shape[1:])
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(ReproError) as excinfo:
        load_weights(_fresh(), path)
    cause = excinfo.value.cause
    assert str(path) in cause and f"missing keys: {first}" in cause
    assert "unexpected keys: head.extra" in cause and f"{name}: file (" in cause
    assert "num_classes" in excinfo.value.fix


def test_pickled_module_is_refused_with_the_fix(trained, tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(trained, path)
    with pytest.raises(ReproError, match="refuses to unpickle") as excinfo:
        load_weights(_fresh(), path)
    assert "state_dict()" in excinfo.value.fix


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ReproError, match="does not exist"):
        load_weights(_fresh(), tmp_path / "none.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(ReproError, match="not a readable torch weights file"):
        load_weights(_fresh(), broken)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ReproError, match="not a state dict"):
        load_weights(_fresh(), tensor)
