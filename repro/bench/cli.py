"""`repro bench`: throughput, latency, memory, energy and MFU of registered models."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from repro import config
from repro.bench.config import DEFAULT_OUT, DEVICES, MODES, BenchConfig
from repro.runtime.vocabulary import PARALLEL, PRECISIONS

EPILOG = """examples:
  repro bench resnet50 --batch-size 8 --iters 5          inference, fp32, synthetic images
  repro bench resnet50 --mode train --batch-size 8       forward + backward + SGD step
  repro bench resnet50 vgg_d --precision bf16 --channels-last --compile
  repro bench alexnet --batch-size auto                  largest batch that fits, then measure
  repro bench resnet18 --data /data/imagenet/val --loader-workers 8   data-loading vs compute
  repro bench resnet50 --mode train --workers 4 --parallel ddp        through Ray Train
  repro bench lenet5 --no-mlflow --out /tmp/bench

Each configuration appends one row to OUT/bench_<device>_<precision>_torch<version>.csv
(throughput from the median repeat; latency percentiles per batch; spread across repeats;
memory; NVML utilisation, power and energy per image on NVIDIA GPUs; FLOPs and MFU) and logs
one MLflow run to experiment repro/bench. On the CPU every output says so, and the GPU-only
columns are empty with the reason in the note.

exit status: 0 done; 1 a configuration failed (its row says why); 2 bad input or settings;
3 tracking degraded (rows written, MLflow logs spooled: run `repro sync`).
"""


def _batch(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'auto'") from None
    if value < 1:
        raise argparse.ArgumentTypeError("the batch size must be at least 1")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark models: images/s, latency, memory, energy, MFU",
        description="Benchmark registered models on this machine: warm-up, then repeats x "
        "iters timed iterations with the device synchronised around each. Inference is a "
        "forward pass; training is forward + cross-entropy + backward + SGD step.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "models", nargs="+", metavar="MODEL", help="registered model(s) (see `repro models`)"
    )
    p.add_argument("--mode", choices=MODES, default="infer", help="infer (default) or train")
    p.add_argument(
        "--batch-size",
        type=_batch,
        default=32,
        metavar="N|auto",
        help="images per step (default 32); auto: the largest that fits (doubling, then "
        "bisection; capped by --max-batch)",
    )
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="default fp32")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (compile time is reported apart, not in images/s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="training workers (> 1 runs data-parallel through Ray Train; train mode only)",
    )
    p.add_argument("--parallel", choices=PARALLEL, default="none", help="parallelism (train)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: cuda if present")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations (default 3)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per repeat (10)")
    p.add_argument("--repeats", type=int, default=3, help="repeats; throughput is the median (3)")
    p.add_argument(
        "--data",
        dest="data_root",
        metavar="IMAGEFOLDER_ROOT",
        help="read real images through a DataLoader and report loader wait vs compute "
        "(default: synthetic tensors on the device)",
    )
    p.add_argument(
        "--loader-workers", type=int, default=2, help="DataLoader num_workers with --data (2)"
    )
    p.add_argument("--max-batch", type=int, help="cap of --batch-size auto (cpu 512, cuda 8192)")
    p.add_argument(
        "--sample-interval",
        dest="sample_interval_s",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="seconds between CPU, memory and (NVML) GPU samples over the timed window, logged "
        "to MLflow as system/* metrics (default 0.1)",
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"results directory ({DEFAULT_OUT})")
    config.add_settings_flags(p, ray=False)
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from repro.bench.record import exit_code, run_benchmarks

    uri = None if args.no_mlflow else config.settings_of(args).tracking_uri
    # the flags' dests are BenchConfig's field names
    flags = [f.name for f in dataclasses.fields(BenchConfig) if f.name in vars(args)]
    configs = [BenchConfig(model, **{f: getattr(args, f) for f in flags}) for model in args.models]
    session = run_benchmarks(configs, Path(args.out), uri)
    if uri and session.spooled is None:
        print(f"logged to MLflow at {uri} (experiment repro/bench)")
    return exit_code(session)
