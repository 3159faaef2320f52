"""Side by side with timm's benchmark.py: the same model, batch, precision and memory format,
interleaved in one run, so the harness's timing can be checked against the tool people trust.

timm's benchmark.py lives in the pytorch-image-models repository (it is not in the timm wheel):
pass the path of a checkout's copy with --timm-benchmark. `pip install timm` for the package.

The model is OURS in both tools: the child process registers ``repro_<model>`` in timm's model
registry, so timm's runner times exactly the network the harness times (timm's own ``resnet50``
is a different network, v1.5 with other defaults). Each measurement runs in a fresh process;
rounds alternate timm and repro to spread any drift of the machine over both, and the median
round counts. Older benchmark.py revisions have no --device flag (they assume CUDA): the child
adds one to timm's parser without touching the file, as later revisions of timm did.

    python benchmarks/compare_timm.py --timm-benchmark ~/pytorch-image-models/benchmark.py \
        --model resnet50 --batch-size 32 --precision fp32

Writes benchmarks/results/compare_timm_<device>_<precision>_torch<version>.csv.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import statistics
import subprocess
import sys
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

TIMM_PRECISION = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
COLUMNS = [
    "model",
    "mode",
    "batch_size",
    "precision",
    "channels_last",
    "timm_images_per_s",
    "repro_images_per_s",
    "ratio",
    "target",
    "verdict",
    "rounds",
    "timm_rounds",
    "repro_rounds",
    "warmup",
    "iters",
    "device",
    "torch",
    "timm",
    "timm_benchmark",
    "finished",
    "note",
]


def _register_in_timm(model_name: str) -> str:
    """Register our builder in timm's registry under ``repro_<model>``; return that name."""
    from timm.models import register_model

    from repro.models import build_model, get_model_spec

    spec = get_model_spec(model_name)
    timm_name = f"repro_{spec.name}"

    def builder(pretrained: bool = False, **kwargs: object) -> object:
        import torch

        model = build_model(spec.name)
        with torch.no_grad():  # timm draws labels below num_classes: take the logits' width
            num_classes = int(model.eval()(spec.example_input(1)).shape[-1])
        model.num_classes = num_classes
        cfg = {"input_size": tuple(spec.input_size), "num_classes": num_classes}
        model.pretrained_cfg = model.default_cfg = cfg
        return model

    builder.__name__ = timm_name
    builder.__module__ = "repro.models"
    register_model(builder)
    return timm_name


def child_timm(args: argparse.Namespace) -> dict[str, float]:
    timm_name = _register_in_timm(args.model)
    spec = importlib.util.spec_from_file_location("timm_benchmark", args.timm_benchmark)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    if "--device" not in bench.parser._option_string_actions:
        bench.parser.add_argument("--device", default="cuda")
    argv = [
        "benchmark.py",
        "--model",
        timm_name,
        "--bench",
        "inference" if args.mode == "infer" else "train",
        "-b",
        str(args.batch_size),
        "--num-warm-iter",
        str(args.warmup),
        "--num-bench-iter",
        str(args.iters),
        "--precision",
        TIMM_PRECISION[args.precision],
        "--device",
        args.device,
    ]
    if args.channels_last:
        argv.append("--channels-last")
    sys.argv = argv
    out = io.StringIO()
    with redirect_stdout(out):
        bench.main()
    text = out.getvalue()
    result = json.loads(text.split("--result", 1)[1])
    key = f"{'infer' if args.mode == 'infer' else 'train'}_samples_per_sec"
    if key not in result:
        raise SystemExit(f"timm's benchmark failed: {result.get('error', result)}")
    return {"images_per_s": float(result[key])}


def child_repro(args: argparse.Namespace) -> dict[str, float]:
    from repro.bench.config import BenchConfig
    from repro.bench.runner import benchmark

    config = BenchConfig(
        model=args.model,
        mode=args.mode,
        batch_size=args.batch_size,
        precision=args.precision,
        channels_last=args.channels_last,
        device=args.device,
        warmup=args.warmup,
        iters=args.iters,
        repeats=1,  # one window of --iters steps, as timm's runner does
    )
    result = benchmark(config)
    if not result.images_per_s:
        raise SystemExit(f"repro bench failed: {result.row.get('note')}")
    return {"images_per_s": float(result.images_per_s), "device": result.row.get("device", "")}


def _run_child(tool: str, args: argparse.Namespace, mode: str) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        tool,
        "--mode",
        mode,
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
        "--precision",
        args.precision,
        "--device",
        args.device,
        "--warmup",
        str(args.warmup),
        "--iters",
        str(args.iters),
        "--timm-benchmark",
        str(args.timm_benchmark),
    ]
    if args.channels_last:
        cmd.append("--channels-last")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{tool} {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> list[dict[str, object]]:
    import timm
    import torch

    from repro.runtime.device import resolve_device, slugify

    device = resolve_device(args.device)
    rows = []
    for mode in args.modes:
        timm_runs, repro_runs = [], []
        repro_device = ""
        for r in range(args.rounds):
            order = ("timm", "repro") if r % 2 == 0 else ("repro", "timm")
            for tool in order:
                out = _run_child(tool, args, mode)
                (timm_runs if tool == "timm" else repro_runs).append(out["images_per_s"])
                repro_device = out.get("device", repro_device) or repro_device
                print(f"round {r + 1} {mode} {tool}: {out['images_per_s']:.2f} images/s")
        t, m = statistics.median(timm_runs), statistics.median(repro_runs)
        ratio = m / t
        rows.append(
            {
                "model": args.model,
                "mode": mode,
                "batch_size": args.batch_size,
                "precision": args.precision,
                "channels_last": args.channels_last,
                "timm_images_per_s": round(t, 3),
                "repro_images_per_s": round(m, 3),
                "ratio": round(ratio, 4),
                "target": args.target,
                "verdict": "pass" if ratio >= args.target else "fail",
                "rounds": args.rounds,
                "timm_rounds": " ".join(f"{x:.2f}" for x in timm_runs),
                "repro_rounds": " ".join(f"{x:.2f}" for x in repro_runs),
                "warmup": args.warmup,
                "iters": args.iters,
                "device": repro_device or device.description,
                "torch": torch.__version__,
                "timm": timm.__version__,
                "timm_benchmark": str(args.timm_benchmark_label or args.timm_benchmark),
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                "note": (
                    "both tools time repro's own network (registered in timm as "
                    f"repro_{args.model}); median of {args.rounds} alternating rounds, each in a "
                    "fresh process"
                ),
            }
        )
    version = slugify(torch.__version__)
    name = f"compare_timm_{device.slug}_{slugify(args.precision)}_torch{version}.csv"
    path = Path(args.out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    for row in rows:
        print(
            f"{row['mode']}: timm {row['timm_images_per_s']} images/s, repro "
            f"{row['repro_images_per_s']} images/s, ratio {row['ratio']} ({row['verdict']} "
            f"against >= {args.target})"
        )
    print(f"wrote {path}")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timm-benchmark", required=True, type=Path, help="path to timm's benchmark.py")
    p.add_argument("--timm-benchmark-label", help="how to name that file in the results")
    p.add_argument("--model", default="resnet50", help="a repro model name (`repro models`)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=sorted(TIMM_PRECISION), default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per mode")
    p.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    p.add_argument("--target", type=float, default=0.95, help="least acceptable repro/timm ratio")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--child", choices=["timm", "repro"], help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["infer", "train"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.timm_benchmark.is_file():
        p.error(
            f"--timm-benchmark {args.timm_benchmark} is not a file: pass the benchmark.py of a "
            "pytorch-image-models checkout"
        )
    if args.child:
        out = child_timm(args) if args.child == "timm" else child_repro(args)
        print(json.dumps(out))
        return 0
    rows = compare(args)
    return 0 if all(r["verdict"] == "pass" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
