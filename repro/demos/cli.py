"""`repro demo`: the embedded demonstrations that `make reproduce` runs on a CPU in minutes.

They prove the accuracy path end to end on real learning (LeNet-5 on scikit-learn's handwritten
digits, 1 vs 2 Ray Train DDP workers; a small YOLO-style detector on the synthetic VOC/COCO set
with the official VOC and COCO metrics). They are demonstrations of the path, not the papers'
claims, and the report shows them apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from repro import config, tracking

DEMOS = ("digits", "detection")
DEFAULT_OUT = "reports/demos"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None


def headline(name: str, result: dict[str, Any]) -> dict[str, float]:
    """The numbers a demo's MLflow run and the console summary show."""
    if name == "digits":
        numbers = {
            f"test_error_w{row['workers']}_mean": float(row["mean"])
            for row in result.get("rows", [])
        }
        comparison = result.get("comparison") or {}
        if isinstance(comparison.get("difference"), int | float):
            numbers["difference_of_means"] = float(comparison["difference"])
        return numbers
    metrics = result.get("metrics", {})
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def run_demo(
    name: str,
    args: argparse.Namespace,
    settings: config.Settings,
    uri: str | None,
    parent: str | None,
) -> dict[str, Any]:
    """Run demo ``name``; its training runs are logged as children of ``parent`` (the demo's
    own run in repro/demos) when ``uri`` is given."""
    out = Path(args.out)
    if name == "digits":
        from repro.demos.digits import run_digits_demo

        return run_digits_demo(
            workers=args.workers,
            seeds=tuple(range(args.seeds)),
            out_dir=out,
            ray_address=settings.ray_address,
            tracking_uri=uri,
            epochs=args.epochs,
            mlflow_parent=parent,
        )
    from repro.demos.detection import DetectionDemoConfig, run_detection_demo

    images = args.images or DetectionDemoConfig.train_images
    share = DetectionDemoConfig.test_images / DetectionDemoConfig.train_images
    return run_detection_demo(
        out,
        work_dir=Path(args.work_dir),
        seed=0,
        train_images=images,
        test_images=max(round(images * share), 1),
        epochs=int(args.epochs) if args.epochs else DetectionDemoConfig.epochs,
        tracking_uri=uri,
        mlflow_parent=parent,
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    settings = config.settings_of(args)
    uri = None if args.no_mlflow else settings.tracking_uri
    if uri:
        tracking.check_tracking_uri(uri)
    names = DEMOS if args.demo == "all" else (args.demo,)
    for name in names:
        parent = None  # the demo's run, opened first: its training runs are its children
        if uri:
            parent = tracking.open_parent(uri, tracking.DEMO_EXPERIMENT, name, {"repro.demo": name})
        try:
            result = run_demo(name, args, settings, uri, parent)
        except BaseException:
            if parent:
                tracking.close_parent(uri, parent, {}, failed=True)
            raise
        numbers = headline(name, result)
        print(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()))
        if uri:
            files = [Path(args.out) / f"{name}.{ext}" for ext in ("json", "csv")]
            params = {"seeds": args.seeds, "workers": args.workers}
            if name == "detection":
                params = dict(result.get("config") or {})
            kept = [str(f) for f in files if f.exists()]
            tracking.log_demo(uri, name, numbers, params, kept, run_id=parent)
    print(f"wrote {args.out}/" + (f"; logged to MLflow at {uri} (repro/demos)" if uri else ""))
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the embedded demonstrations (digits, detection)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("demo", choices=[*DEMOS, "all"], help="which demonstration")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"result directory (default {DEFAULT_OUT})")
    p.add_argument(
        "--workers",
        type=_ints,
        default=(0, 2),
        help="digits: worker counts to compare; 0 trains in this process without Ray "
        "(default 0,2: one process against 2 Ray Train DDP workers)",
    )
    p.add_argument("--seeds", type=int, default=3, help="digits: seeds per worker count")
    p.add_argument(
        "--epochs", type=float, help="training epochs (default: the demo's own; fewer for a trial)"
    )
    p.add_argument(
        "--images", type=int, help="detection: training images (default 640; test gets 5/16)"
    )
    p.add_argument(
        "--work-dir",
        default="data/synth",
        help="detection: where the synthetic VOC set is written (default data/synth)",
    )
    config.add_settings_flags(p)
    p.set_defaults(func=_cmd_demo)
