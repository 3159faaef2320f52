"""`repro train` and `repro scaling`: parallel training through Ray Train.

Heavy imports (torch, ray, mlflow) happen inside the command functions, so `repro --help`
stays fast.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from repro import config
from repro.config import add_settings_flags
from repro.errors import ReproError
from repro.files import atomic_write_json
from repro.runtime.vocabulary import PARALLEL, PRECISIONS
from repro.train.config import TrainConfig

TRAIN_EPILOG = """examples:
  repro train lenet5 --workers 0 --steps 20          in this process, no Ray, no parallelism
  repro train resnet50 --workers 2 --parallel ddp --batch-size 32 --steps 3
  repro train lenet5 --workers 2 --parallel fsdp --steps 50 --checkpoint-every 10
  repro train vgg16 --workers 2 --parallel pipeline --batch-size 8 --microbatches 4
  repro train alexnet --workers 2 --parallel towers --batch-size 16 --precision bf16
  repro train resnet50 --workers 2 --checkpoint-every 100 --max-failures 3 --name r50
      (rerunning with --name r50 resumes from its latest checkpoint)
  repro train resnet18 --data /data/imagenet/train --workers 4 --device gpu

Throughput (images/s) counts the global batch per step over the steps after the warm-up of
each attempt; Ray start-up, worker start, checkpoint and MLflow seconds are reported apart.
"""

SCALING_EPILOG = """examples:
  repro scaling lenet5 --workers 1,2 --steps 20
  repro scaling resnet50 --workers 1,2,4 --batch-size 32 --parallel ddp --device gpu
  repro scaling alexnet --workers 1,2 --parallel towers --batch-size 32

ddp/fsdp keep --batch-size per worker (weak scaling); pipeline/towers keep it as the global
batch (strong scaling). One worker trains the single-device model. efficiency =
throughput_n / (n * throughput_1). Rows go to OUT/scaling_<device>_<precision>_torch<ver>.csv
and to MLflow experiment "repro/scaling".
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registered classification model (see `repro models`)")
    p.add_argument("--steps", type=int, default=10, help="training steps (default 10)")
    p.add_argument("--warmup-steps", type=int, default=2, help="steps not timed (default 2)")
    p.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="fp32 (default), tf32, bf16, fp16"
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--microbatches", type=int, default=4, help="pipeline microbatches (4)")
    p.add_argument(
        "--data",
        dest="data_root",
        metavar="ROOT",
        help="ImageFolder root, or a folder of MNIST-format IDX files (Fashion-MNIST, MNIST: "
        "its train split, unaugmented, at the model's input size); default: synthetic data",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "gpu"],
        default="auto",
        help="one GPU per worker, or CPUs (auto: gpu when torch sees CUDA here)",
    )
    p.add_argument(
        "--storage",
        dest="storage_path",
        metavar="DIR",
        help="checkpoints (default ~/ray_results/repro)",
    )
    add_settings_flags(p)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on Ray Train workers (ddp, fsdp, pipeline, AlexNet towers)",
        description="Train MODEL for --steps steps on --workers Ray Train workers with the\n"
        "chosen parallelism; checkpoint every --checkpoint-every steps, resume after a worker\n"
        "failure (--max-failures), log per-step metrics to MLflow (experiment repro/train)\n"
        "and print throughput.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p)
    p.add_argument(
        "--workers", type=int, default=1, help="Ray Train workers; 0 trains in this process"
    )
    p.add_argument(
        "--parallel",
        choices=PARALLEL,
        help="strategy (default: ddp with several workers, else none)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="global batch (default 32)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps; 0: no checkpoints")
    p.add_argument("--max-failures", type=int, default=0, help="worker-group restarts allowed")
    p.add_argument(
        "--name",
        dest="run_name",
        metavar="NAME",
        help="run name; an existing run of this name resumes",
    )
    p.add_argument(
        "--system-metrics-interval",
        dest="system_metrics_s",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between CPU, memory and GPU samples logged to MLflow as system/* metrics "
        "(default 5; 0: none)",
    )
    # fault tests: rank 1 (rank 0 alone) exits abruptly at this step, on the first attempt only
    p.add_argument(
        "--inject-fault-at", dest="fault_step", type=int, metavar="STEP", help=argparse.SUPPRESS
    )
    p.add_argument("--json", metavar="PATH", help="also write the full result as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "scaling",
        help="throughput and scaling efficiency at several worker counts",
        description="Train MODEL a fixed number of steps at each worker count and report\n"
        "images/s and scaling efficiency.",
        epilog=SCALING_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p)
    p.add_argument("--workers", required=True, help="comma-separated worker counts, e.g. 1,2,4")
    p.add_argument("--parallel", choices=PARALLEL[1:], default="ddp", help="default ddp")
    p.add_argument(
        "--batch-size", type=int, default=32, help="per worker (ddp/fsdp), else global (32)"
    )
    p.add_argument("--out", default="benchmarks/results", help="CSV directory")
    p.set_defaults(func=cmd_scaling)


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ReproError(
            f"--workers {text!r} is not a list of positive worker counts.",
            "pass e.g. --workers 1,2,4.",
        )
    return counts


def _use_gpu(device: str) -> bool:
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device == "gpu"


def _train_config(args: argparse.Namespace, workers: int, parallel: str) -> TrainConfig:
    """The flags' dests are TrainConfig's field names; the rest comes from the settings."""
    settings = config.settings_of(args)
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name in vars(args)}
    given.update(parallel=parallel, workers=workers, ray_address=settings.ray_address)
    given["tracking_uri"] = None if args.no_mlflow else settings.tracking_uri
    return TrainConfig(**given, use_gpu=_use_gpu(args.device))


def cmd_train(args: argparse.Namespace) -> int:
    from repro.train.distributed import TrainingInterrupted, run_training

    parallel = args.parallel or ("ddp" if args.workers > 1 else "none")
    config = _train_config(args, args.workers, parallel)
    try:
        result = run_training(config)
    except TrainingInterrupted as stop:
        print(stop.message(), file=sys.stderr)
        return stop.exit_code
    env, o = result.environment, result.overhead
    print(
        f"{config.model} {parallel} on {env['world_size']} worker(s), {env['device']}, "
        f"{env['precision']}, torch {env['torch']}: {result.images_per_s:.1f} images/s "
        f"(median step {result.step_s_median:.4f} s over {result.timed_steps} timed step(s), "
        f"data wait {100 * result.data_s_fraction:.1f}%)"
    )
    losses = [round(e["loss"], 4) for e in result.history]
    print(f"loss per step: {losses}")
    print(
        f"restarts {result.restarts}, resumed from step {result.resumed_from_step}, "
        f"checkpoint {result.checkpoint or 'none'}"
    )
    for line in result.resume_skipped:
        print(f"skipped unreadable checkpoint {line}")
    print("overhead (not in images/s): " + ", ".join(f"{k} {v:.2f}" for k, v in o.items()))
    if config.tracking_uri is None or args.no_mlflow:
        print("MLflow: not logged (--no-mlflow)")
    else:
        print(f"MLflow: run {env.get('mlflow_run_id')} in experiment repro/train")
    if args.json:
        atomic_write_json(args.json, result.as_dict(), indent=1)
        print(f"wrote {args.json}")
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    from repro.train.scaling import run_scaling

    counts = _worker_counts(args.workers)
    base = _train_config(args, max(counts), args.parallel)
    rows, path = run_scaling(base, counts, args.batch_size, Path(args.out))
    print(f"wrote {path}" + ("" if args.no_mlflow else " and MLflow experiment repro/scaling"))
    return 0
