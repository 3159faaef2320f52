"""Parallel strategies against the single-device model: 2 gloo processes (forked, so torch is
not imported again), every result compared with the same step on one device."""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from repro.errors import ReproError
from repro.train import loop
from repro.train.checkpoint import load_checkpoint, save_checkpoint
from repro.train.config import TrainConfig
from repro.train.data import global_synthetic_batch, synthetic_batch
from repro.train.gpipe import layer_flops, sequential_layers, split_points
from repro.train.parallelize import parallelize, parameter_summary
from repro.train.towers import AlexNetTower

TOL = dict(rtol=1e-4, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn: Callable[..., Any], rank: int, world: int, port: int, out: Path) -> None:
    code = 0
    try:
        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
        torch.save(fn(rank, world), out / f"rank{rank}.pt")
        dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - reported to the parent through the file
        (out / f"rank{rank}.err").write_text(traceback.format_exc())
        code = 1
    os._exit(code)


def run_ranks(fn: Callable[[int, int], Any], tmp_path: Path, world: int = 2) -> list[Any]:
    """Run ``fn(rank, world)`` in ``world`` forked gloo processes; their return values."""
    ctx = mp.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_entry, args=(fn, r, world, port, tmp_path)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    for p in procs:
        if p.is_alive():
            p.kill()
    errors = [f.read_text() for f in sorted(tmp_path.glob("rank*.err"))]
    assert not errors, "\n".join(errors)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


def _single_step(config: TrainConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    setup = loop.build_model_setup(config)
    model = setup.model.train()
    opt = loop.sgd_optimizer(model.parameters(), config)
    loss = loop.forward_backward(model, x, y, device=torch.device("cpu"), precision="fp32")
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    loop.optimizer_step(opt, None)
    return {"loss": float(loss), "grads": grads, "params": dict(model.state_dict())}


def _data_parallel_step(strategy: str) -> Callable[[int, int], dict[str, Any]]:
    def step(rank: int, world: int) -> dict[str, Any]:
        config = TrainConfig(model="lenet5", parallel=strategy, batch_size=8, workers=world)
        pm = parallelize(
            loop.build_model_setup(config),
            config,
            rank=rank,
            world=world,
            device=torch.device("cpu"),
        )
        opt = loop.sgd_optimizer(pm.module.parameters(), config)
        x, y = synthetic_batch(
            0, batch=8, input_size=(1, 32, 32), num_classes=10, seed=0, shard=pm.shard
        )
        loss = pm.global_loss(pm.forward_backward(x, y))
        loop.optimizer_step(opt, None)
        full = {}
        for name, p in pm.base.named_parameters():
            full[name] = p.full_tensor().detach() if hasattr(p, "full_tensor") else p.detach()
        return {"loss": loss, "params": full, "summary": parameter_summary(pm)}

    return step


@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_data_parallel_step_equals_single_device_full_batch(strategy: str, tmp_path: Path) -> None:
    ranks = run_ranks(_data_parallel_step(strategy), tmp_path)
    config = TrainConfig(model="lenet5", batch_size=8)
    x, y = global_synthetic_batch(
        0, batch=8, input_size=(1, 32, 32), num_classes=10, seed=0, shards=2
    )
    ref = _single_step(config, x, y)
    for r in ranks:
        assert r["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        assert set(r["params"]) == {
            n for n, _ in loop.build_model_setup(config).model.named_parameters()
        }
        for name, value in r["params"].items():
            torch.testing.assert_close(value, ref["params"][name], **TOL)
    for name in ranks[0]["params"]:  # replicas identical to each other
        torch.testing.assert_close(
            ranks[0]["params"][name], ranks[1]["params"][name], rtol=0, atol=0
        )
    assert ranks[0]["summary"]["checksum"] == ranks[1]["summary"]["checksum"]
    if strategy == "fsdp":  # each rank stores only its shard
        assert ranks[0]["summary"]["params"] + ranks[1]["summary"]["params"] == pytest.approx(
            60000, abs=64
        )


def _tower_config() -> TrainConfig:
    return TrainConfig(
        model="alexnet", model_kwargs={"dropout": 0.0}, parallel="towers", batch_size=2, workers=2
    )


def _towers(rank: int, world: int) -> dict[str, Any]:
    config = _tower_config()
    pm = parallelize(
        loop.build_model_setup(config), config, rank=rank, world=world, device=torch.device("cpu")
    )
    x, y = synthetic_batch(0, batch=2, input_size=(3, 227, 227), num_classes=1000, seed=0)
    with torch.no_grad():
        logits = pm.module(x)
    loss = pm.forward_backward(x, y)
    grads = {n: p.grad.clone() for n, p in pm.base.named_parameters()}
    return {"logits": logits, "loss": float(loss), "grads": grads, "summary": parameter_summary(pm)}


@pytest.mark.timeout(300)
def test_alexnet_towers_equal_single_device_forward_and_backward(tmp_path: Path) -> None:
    ranks = run_ranks(_towers, tmp_path)
    config = _tower_config()
    model = loop.build_model_setup(config).model.train()
    x, y = synthetic_batch(0, batch=2, input_size=(3, 227, 227), num_classes=1000, seed=0)
    logits = model(x)
    loss = loop.classification_loss(logits, y)
    loss.backward()
    loss = loss.detach()
    full = dict(model.named_parameters())
    for t, r in enumerate(ranks):
        torch.testing.assert_close(r["logits"], logits.detach(), rtol=1e-4, atol=1e-5)
        assert r["loss"] == pytest.approx(float(loss), rel=1e-5)
        assert len(r["grads"]) == len(full)
        for name, grad in r["grads"].items():
            ref = full[name].grad
            rows = model.tower_channels(t, ref.shape[0])
            torch.testing.assert_close(grad, ref[rows], rtol=1e-4, atol=1e-6)
    total = sum(p.numel() for p in model.parameters())
    held = [r["summary"]["params"] for r in ranks]
    assert sum(held) == total and held[0] == held[1]  # each tower holds exactly half


def _pipeline_config() -> TrainConfig:
    return TrainConfig(
        model="vgg16",
        model_kwargs={"dropout": 0.0},
        parallel="pipeline",
        batch_size=2,
        microbatches=2,
        workers=2,
    )


def _pipeline(rank: int, world: int) -> dict[str, Any]:
    config = _pipeline_config()
    pm = parallelize(
        loop.build_model_setup(config), config, rank=rank, world=world, device=torch.device("cpu")
    )
    x, y = synthetic_batch(0, batch=2, input_size=(3, 224, 224), num_classes=1000, seed=0)
    loss = pm.global_loss(pm.forward_backward(x, y))
    first = next(pm.base.parameters())
    return {
        "loss": loss,
        "first_grad": first.grad.clone(),
        "info": pm.info,
        "summary": parameter_summary(pm),
    }


@pytest.mark.timeout(300)
def test_vgg16_pipeline_loss_and_gradients_equal_single_device(tmp_path: Path) -> None:
    ranks = run_ranks(_pipeline, tmp_path)
    config = _pipeline_config()
    model = loop.build_model_setup(config).model.train()
    x, y = synthetic_batch(0, batch=2, input_size=(3, 224, 224), num_classes=1000, seed=0)
    loss = loop.classification_loss(model(x), y)
    loss.backward()
    loss = loss.detach()
    layers = sequential_layers(model)
    for r in ranks:  # both ranks report the last stage's loss
        assert r["loss"] == pytest.approx(float(loss), rel=1e-5)
    lo0, hi0 = ranks[0]["info"]["stage_layers"]
    lo1, hi1 = ranks[1]["info"]["stage_layers"]
    assert lo0 == 0 and hi0 == lo1 and hi1 == len(layers)
    for r in ranks:
        lo = r["info"]["stage_layers"][0]
        first = next(p for layer in layers[lo:] for p in layer.parameters())
        torch.testing.assert_close(r["first_grad"], first.grad, rtol=1e-4, atol=1e-7)
    total = sum(p.numel() for p in model.parameters())
    assert sum(r["summary"]["params"] for r in ranks) == total
    # balanced by FLOPs: neither stage does more than 3/4 of the work
    for r in ranks:
        assert r["info"]["stage_flops"] < 0.75 * r["info"]["total_flops"]


def test_sequential_layers_compose_to_the_model() -> None:
    config = TrainConfig(model="alexnet_single", model_kwargs={"dropout": 0.0})
    model = loop.build_model_setup(config).model.eval()
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        torch.testing.assert_close(torch.nn.Sequential(*sequential_layers(model))(x), model(x))


def test_split_points_balance_flops_and_skip_inplace_layers() -> None:
    config = TrainConfig(model="vgg16")
    meta = loop.build_model_setup(config, device="meta").model
    layers = sequential_layers(meta)
    flops = layer_flops(layers, (3, 224, 224))
    assert sum(flops) == pytest.approx(2 * 15.47e9, rel=0.01)  # VGG-16: 15.5 G multiply-adds
    for stages in (2, 3, 4):
        starts = split_points(flops, layers, stages)
        assert starts[0] == 0 and starts == sorted(set(starts)) and len(starts) == stages
        assert not any(getattr(layers[i], "inplace", False) for i in starts[1:])
        shares = [sum(flops[a:b]) for a, b in zip(starts, [*starts[1:], len(layers)], strict=True)]
        assert max(shares) < 1.6 * sum(flops) / stages


def test_non_sequential_model_is_refused_for_pipeline() -> None:
    meta = loop.build_model_setup(TrainConfig(model="resnet18"), device="meta").model
    with pytest.raises(ReproError, match="sequential"):
        sequential_layers(meta)


def test_towers_need_the_two_tower_alexnet() -> None:
    model = loop.build_model_setup(TrainConfig(model="alexnet_single")).model
    with pytest.raises(ReproError, match="two-tower"):
        AlexNetTower(model, 0)


def test_synthetic_shards_concatenate_to_the_global_batch() -> None:
    full = global_synthetic_batch(3, batch=8, input_size=(1, 4, 4), num_classes=5, seed=1, shards=2)
    again = global_synthetic_batch(
        3, batch=8, input_size=(1, 4, 4), num_classes=5, seed=1, shards=2
    )
    torch.testing.assert_close(full[0], again[0])
    assert full[0].shape == (8, 1, 4, 4) and int(full[1].max()) < 5
    other = global_synthetic_batch(
        4, batch=8, input_size=(1, 4, 4), num_classes=5, seed=1, shards=2
    )
    assert not torch.equal(full[0], other[0])
    with pytest.raises(ReproError, match="evenly"):
        global_synthetic_batch(0, batch=7, input_size=(1, 4, 4), num_classes=5, seed=1, shards=2)


def _roundtrip(kw: dict[str, Any], directory: Path) -> Callable[[int, int], dict[str, Any]]:
    """Step, checkpoint, step again; then a model built from another seed loads the checkpoint
    and takes the same second step: losses and parameters must agree."""

    def run(rank: int, world: int) -> dict[str, Any]:
        def build(seed: int) -> tuple[Any, torch.optim.Optimizer]:
            config = TrainConfig(workers=world, seed=seed, **kw)
            setup = loop.build_model_setup(config)
            pm = parallelize(setup, config, rank=rank, world=world, device=torch.device("cpu"))
            return pm, loop.sgd_optimizer(pm.module.parameters(), config)

        def step(pm: Any, opt: torch.optim.Optimizer, i: int) -> float:
            size = loop.build_model_setup(TrainConfig(**kw), device="meta")
            x, y = synthetic_batch(
                i,
                batch=kw["batch_size"],
                input_size=size.input_size,
                num_classes=size.num_classes,
                seed=0,
                shard=pm.shard,
            )
            loss = pm.global_loss(pm.forward_backward(x, y))
            loop.optimizer_step(opt, None)
            return loss

        pm, opt = build(seed=0)
        step(pm, opt, 0)
        save_checkpoint(directory, pm, opt, {"next_step": 1, "history": [], "parallel": pm.strategy,
                                             "world": world})  # fmt: skip
        dist.barrier()
        expected = step(pm, opt, 1)
        pm2, opt2 = build(seed=1)
        state = load_checkpoint(directory, pm2, opt2)
        got = step(pm2, opt2, 1)
        return {
            "expected": expected,
            "got": got,
            "next_step": state["next_step"],
            "sums": (parameter_summary(pm)["checksum"], parameter_summary(pm2)["checksum"]),
        }

    return run


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "kw",
    [
        dict(model="lenet5", parallel="fsdp", batch_size=8),
        dict(
            model="alexnet_single",
            parallel="pipeline",
            batch_size=4,
            microbatches=2,
            model_kwargs={"dropout": 0.0},
        ),
        dict(model="alexnet", parallel="towers", batch_size=2, model_kwargs={"dropout": 0.0}),
    ],  # fmt: skip
    ids=["fsdp", "pipeline", "towers"],
)
def test_checkpoint_round_trip_resumes_the_same_training(kw: dict, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ranks = run_ranks(_roundtrip(kw, ckpt), tmp_path)
    for r in ranks:
        assert r["next_step"] == 1
        assert r["got"] == pytest.approx(r["expected"], rel=1e-5)
        assert r["sums"][1] == pytest.approx(r["sums"][0], rel=1e-6)
    files = {p.name for p in ckpt.iterdir()}
    if kw["parallel"] == "fsdp":  # one full, unsharded state written by rank 0
        assert "model.pt" in files and "model_rank1.pt" not in files
    else:
        assert {"model_rank0.pt", "model_rank1.pt"} <= files
