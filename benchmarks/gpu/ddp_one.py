"""DDP on one device: torch.distributed with world size 1 (NCCL on a GPU, gloo on the CPU), the
harness's own network wrapped in DistributedDataParallel, a few timed SGD steps on synthetic
images. It proves the data-parallel path without Ray (which the GPU machine lacks); scaling needs
more GPUs than one, and the row says so.

    python benchmarks/gpu/ddp_one.py --model resnet50 --batch-size 128 --steps 20 --out OUT

Writes OUT/ddp_one_<device>_<precision>_torch<version>.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repro, without installing it

from repro.models import build_model, get_model_spec  # noqa: E402
from repro.runtime.device import resolve_device, slugify  # noqa: E402
from repro.runtime.precision import autocast  # noqa: E402
from repro.runtime.timing import time_step  # noqa: E402

COLUMNS = ["timestamp", "status", "model", "backend", "world_size", "device", "precision",
           "channels_last", "batch_size", "steps", "images_per_s", "step_s_median", "loss_first",
           "loss_last", "torch", "note"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps (after 3 warm-up steps)")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)

    device = resolve_device("auto")
    backend = "nccl" if device.is_cuda else "gloo"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    dist.init_process_group(backend, rank=0, world_size=1)
    row = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "backend": backend,
        "world_size": dist.get_world_size(),
        "device": device.description,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "torch": torch.__version__,
    }
    try:
        spec = get_model_spec(args.model)
        model = build_model(args.model).to(device.torch_device)
        memory = torch.channels_last if args.channels_last else torch.contiguous_format
        model = model.to(memory_format=memory)
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.is_cuda else None)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
        images = torch.randn(args.batch_size, *spec.input_size, device=device.torch_device)
        images = images.to(memory_format=memory)
        # every classifier here has at least 10 outputs
        labels = torch.randint(0, 10, (args.batch_size,), device=device.torch_device)
        losses: list[torch.Tensor] = []

        def step() -> None:
            with autocast(args.precision, device.type):
                out = ddp(images)
                out = out[0] if isinstance(out, tuple) else out
                loss = torch.nn.functional.cross_entropy(out.float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP's all-reduce runs here, through the backend
            opt.step()
            losses.append(loss.detach())

        # one step per repeat: the median is the median step, as the bench rows report it
        timing = time_step(step, device=device.torch_device, warmup=args.warmup, iters=1,
                           repeats=args.steps, items_per_iter=args.batch_size)  # fmt: skip
        timed = [float(v) for v in losses[args.warmup :]]
        median = timing.median_s
        row.update(status="ok", images_per_s=round(timing.items_per_s, 2),
                   step_s_median=round(median, 5), loss_first=round(timed[0], 4),
                   loss_last=round(timed[-1], 4),
                   note=f"world size 1 over {backend}: the data-parallel path runs; scaling "
                        "efficiency needs two or more GPUs, and one is lent")  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the row records why, the script goes on
        row.update(status="error", note=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        dist.destroy_process_group()
    where = slugify(f"{device.type}-{device.name}")
    name = f"ddp_one_{where}_{args.precision}_torch{slugify(torch.__version__)}.csv"
    out = Path(args.out) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerow(row)
    print(
        f"{args.model} DDP x1 ({backend}): {row.get('images_per_s', row['status'])} images/s; "
        f"{row.get('note', '')} -> {out}"
    )
    return 0 if row["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
