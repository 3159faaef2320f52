"""Parallelism applied in one place, over the single-device model, in torchtitan's order:
model parallel (AlexNet towers) -> pipeline -> compile -> FSDP -> DDP.

Every strategy answers the same step interface (``ParallelModel.forward_backward`` then the
optimizer on ``ParallelModel.module``'s parameters), so the training loop does not know which
one runs: for the pipeline the schedule's step replaces forward and backward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.pipelining import PipelineStage, ScheduleGPipe
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from repro.errors import ReproError
from repro.runtime.precision import autocast
from repro.train import loop
from repro.train.config import TrainConfig
from repro.train.data import Shard
from repro.train.gpipe import build_stage, layer_flops, sequential_layers
from repro.train.loop import ModelSetup
from repro.train.towers import AlexNetTower

DETECTOR_PARALLEL = ("none", "ddp")  # detectors take lists of images and targets


@dataclass
class ParallelModel:
    """This rank's part of the model and how one training step runs on it."""

    strategy: str
    module: nn.Module  # what this rank runs (wrapped); the optimizer takes its parameters
    base: nn.Module  # the same parameters, unwrapped (no DDP/compile): what checkpoints save
    rank: int
    world: int
    device: torch.device
    precision: str
    shard: Shard  # which part of the global batch this rank reads
    scaler: torch.amp.GradScaler | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # A detector's loss (DDP averages the ranks' gradients, so each rank's loss is the mean
    # over its share of the global batch); None: the classification loss.
    loss_fn: loop.Loss | None = None
    # Towers: every rank computes the same loss from the gathered logits and the all-gather's
    # backward sums the ranks' gradients, so each rank backpropagates 1/world of it.
    same_loss: bool = False

    def forward_backward(self, x: Any, y: Any) -> torch.Tensor:
        return loop.forward_backward(
            self.module,
            x,
            y,
            device=self.device,
            precision=self.precision,
            scaler=self.scaler,
            backward_scale=1.0 / self.world if self.same_loss else 1.0,
            loss_fn=self.loss_fn,
        )

    def global_loss(self, loss: torch.Tensor) -> float:
        """The loss of the whole global batch, the same on every rank."""
        if self.same_loss or self.world == 1 or not dist.is_initialized():
            return float(loss)
        t = loss.detach().float().reshape(1).clone()
        dist.all_reduce(t)
        return float(t) / self.world

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, rank 0's first (every rank gets the list)."""
        if self.world == 1 or not dist.is_initialized():
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out


@dataclass
class PipelineModel(ParallelModel):
    schedule: Any = None

    @property
    def last(self) -> bool:
        return self.rank == self.world - 1

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses: list[torch.Tensor] = []
        with autocast(self.precision, self.device.type):
            if self.rank == 0:
                self.schedule.step(x)
            elif self.last:
                self.schedule.step(target=y, losses=losses)
            else:
                self.schedule.step()
        if self.last:
            return torch.stack([loss.detach().float() for loss in losses]).mean()
        return torch.zeros((), device=self.device)

    def global_loss(self, loss: torch.Tensor) -> float:
        t = loss.detach().float().reshape(1).clone()
        dist.all_reduce(t)  # only the last stage holds a non-zero loss
        return float(t)


def check_strategy(config: TrainConfig, world: int, model_name: str) -> None:
    """Errors a user can cause by combining --parallel, --workers, precision and the model
    (checked again by run_training before anything starts)."""
    p = config.parallel
    if p == "towers" and (world != 2 or model_name != "alexnet"):
        raise ReproError(
            f"--parallel towers splits AlexNet's two towers over exactly 2 workers; got model "
            f"{model_name!r} on {world} worker(s).",
            "run `repro train alexnet --workers 2 --parallel towers`.",
        )
    if p == "pipeline" and world < 2:
        raise ReproError(
            "--parallel pipeline needs at least 2 workers (one per stage).", "pass --workers 2."
        )
    if p == "pipeline" and config.precision == "fp16":
        raise ReproError(
            "fp16 needs loss scaling, which the pipeline schedule's own backward does not apply.",
            "use --precision bf16 (or fp32) with --parallel pipeline.",
        )
    if p == "pipeline" and config.batch_size % config.microbatches:
        raise ReproError(
            f"the batch of {config.batch_size} does not split into {config.microbatches} "
            "pipeline microbatches.",
            "pass a --batch-size that is a multiple of --microbatches.",
        )


class Contiguous(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()


def _fsdp_blocks(model: nn.Module) -> list[nn.Module]:
    """Units to shard one by one: each child of a top-level container that holds parameters
    (ResNet's blocks, VGG's layers), else the top-level child itself."""
    blocks = []
    for child in model.children():
        if isinstance(child, nn.Sequential | nn.ModuleList):
            blocks += [m for m in child if any(True for _ in m.parameters())]
        elif any(True for _ in child.parameters()):
            blocks.append(child)
    return blocks


def _pipeline_stage(
    setup: ModelSetup, config: TrainConfig, rank: int, world: int
) -> tuple[nn.Module, dict[str, Any]]:
    layers = sequential_layers(setup.model)
    meta = loop.build_model_setup(config, setup.num_classes, device="meta")
    flops = layer_flops(sequential_layers(meta.model), setup.input_size)
    stage, (lo, hi) = build_stage(layers, flops, rank, world)
    if config.channels_last and rank < world - 1:
        stage.append(Contiguous())  # stages exchange plain NCHW buffers
    info = {"stage_layers": [lo, hi], "stage_flops": sum(flops[lo:hi]), "total_flops": sum(flops)}
    return stage, info


def parallelize(
    setup: ModelSetup,
    config: TrainConfig,
    *,
    rank: int,
    world: int,
    device: torch.device,
    group: dist.ProcessGroup | None = None,
    loss_fn: loop.Loss | None = None,
) -> ParallelModel:
    """Apply ``config.parallel`` to the single-device model of ``setup`` for this rank; a
    detector's training step computes ``loss_fn`` instead of the classification loss."""
    p = config.parallel
    if loss_fn is not None and p not in DETECTOR_PARALLEL:
        raise ReproError(
            f"--parallel {p} is not available for the detector {setup.spec.name}.",
            f"use one of {', '.join(DETECTOR_PARALLEL)} (data-parallel DDP over several workers).",
        )
    check_strategy(config, world, setup.spec.name)
    if p != "none" and world > 1 and not dist.is_initialized():
        raise ReproError(f"--parallel {p} needs the workers' process group, which is not set up.")
    model, info = setup.model, {}
    if p == "towers":  # 1. model parallel: this rank keeps its tower only
        model = AlexNetTower(model, rank, group)
    if p == "pipeline":  # 2. pipeline: this rank keeps its stage only
        model, info = _pipeline_stage(setup, config, rank, world)
    model = model.to(device).train()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model.compile()  # in place: module type and state-dict keys stay those of the model
    base = model
    if p == "fsdp" and world > 1:  # 3. FSDP shards parameters in place (base is sharded too)
        mesh = init_device_mesh(device.type, (world,))
        for block in _fsdp_blocks(model):
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    if p == "ddp" and world > 1:  # 4. DDP
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    common = dict(
        strategy=p,
        module=model,
        base=base,
        rank=rank,
        world=world,
        device=device,
        precision=config.precision,
        scaler=loop.make_grad_scaler(device, config.precision),
        info=info,
        loss_fn=loss_fn,
    )
    if p == "pipeline":
        stage = PipelineStage(model, rank, world, device, group=group)
        schedule = ScheduleGPipe(stage, config.microbatches, loss_fn=loop.classification_loss)
        return PipelineModel(shard=Shard(), schedule=schedule, **common)
    towers = p == "towers"  # every tower reads the whole batch
    return ParallelModel(
        shard=Shard() if towers else Shard(rank, world), same_loss=towers, **common
    )


def parameter_summary(pm: ParallelModel) -> dict[str, float]:
    """What this rank holds: its parameter count and the sum of the parameters' values,
    over the full (unsharded) parameters for FSDP so replicas can be compared."""
    count, total = 0, 0.0
    with torch.no_grad():
        for p in pm.base.parameters():
            local = p.to_local() if isinstance(p, DTensor) else p
            full = p.full_tensor() if isinstance(p, DTensor) else p
            count += local.numel()
            total += float(full.double().sum())
    return {"params": float(count), "checksum": total}
