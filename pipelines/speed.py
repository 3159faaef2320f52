"""DVC stage `speed`: re-time the papers' speed claims (R-CNN, Fast/Faster R-CNN, YOLO,
GoogLeNet) into benchmarks/speed_claims/<environment>/, or keep the committed results where
params.yaml's `speed_stage.retime` says not to (auto: only where torch sees a GPU)."""

from __future__ import annotations

import argparse
import sys

from repro import config
from repro.errors import ReproError
from repro.runner import RunSettings, run_papers, stage_status
from repro.suites.speed_stage import committed_folders, default_device, results_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    config.add_settings_flags(parser)
    parser.add_argument("--no-ray", action="store_true", help="time in this process, no Ray")
    parser.add_argument(
        "--retime",
        choices=config.RETIME,
        help="override speed_stage.retime (and REPRO_RETIME_SPEED)",
    )
    args = parser.parse_args(argv)
    try:
        stage = config.load_settings(args.params, retime=args.retime).speed_stage
        device = default_device()
        go, why = stage.decide(device.type == "cuda")
        if not go:
            kept = ", ".join(committed_folders(stage.out)) or "none"
            print(f"speed: not re-timed: {why}. The report renders the committed results "
                  f"under {stage.out}/ ({kept}).")  # fmt: skip
            return 0
        out = results_folder(stage.out, device)
        print(f"speed: re-timing {', '.join(stage.papers)} into {out}/ ({why})")
        settings = RunSettings.resolve(
            args.params,
            suites=["speed"],
            out_dir=out,
            tracking_uri=args.tracking_uri,
            no_mlflow=args.no_mlflow,
            ray_address=args.ray_address,
            no_ray=args.no_ray,
        )
        runs = run_papers(list(stage.papers), settings)
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    for run in runs:
        print(f"{run.paper}: {len(run.results)} claims in {run.meta['run_seconds']:.1f} s")
    return stage_status(runs)


if __name__ == "__main__":
    sys.exit(main())
