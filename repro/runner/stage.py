"""The DVC stages whose results are committed under benchmarks/<kind>_claims/<environment>/:
`speed` (the speed suite) and `accuracy` (the accuracy suite). Each measures its papers again
where params.yaml says (its CommittedStage), into the folder named by this machine, or keeps the
committed results, which the report folds in."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from repro import config
from repro.errors import ReproError
from repro.runner import RunInterrupted, run_papers, stage_status
from repro.runner.settings import RunSettings
from repro.suites.stages import committed_folders, default_device, results_folder

# stage -> (its params.yaml section, the flag over its mode, what it does, what it did not)
STAGES = {
    "speed": ("speed_stage", "--retime", "re-timing", "not re-timed"),
    "accuracy": ("accuracy_stage", "--retrain", "retraining", "not retrained"),
}


def stage_parser(name: str, description: str | None) -> argparse.ArgumentParser:
    section, flag, *_ = STAGES[name]
    parser = argparse.ArgumentParser(description=description)
    config.add_settings_flags(parser)
    parser.add_argument("--no-ray", action="store_true", help="measure in this process, no Ray")
    parser.add_argument(
        flag,
        dest="mode",
        choices=config.RETIME,
        help=f"override {section}.{flag[2:]} (always, never, or auto: only where torch sees a "
        "GPU; also its environment variable)",
    )
    return parser


def run_stage(name: str, argv: list[str] | None = None, description: str | None = None) -> int:
    """The stage ``name`` as a command: measure its papers again, or say why not."""
    section, flag, verb, kept_verb = STAGES[name]
    args = stage_parser(name, description).parse_args(argv)
    try:
        settings = config.load_settings(args.params, **{flag[2:]: args.mode})
        stage: Any = getattr(settings, section)
        device = default_device()
        go, why = stage.decide(device.type == "cuda")
        if not go:
            Path(stage.out).mkdir(parents=True, exist_ok=True)  # DVC's output, even when empty
            kept = ", ".join(committed_folders(stage.out)) or "none"
            print(f"{name}: {kept_verb}: {why}. The report renders the committed "
                  f"results under {stage.out}/ ({kept}).")  # fmt: skip
            return 0
        out = results_folder(stage.out, device)
        print(f"{name}: {verb} {', '.join(stage.papers)} into {out}/ ({why})")
        run = RunSettings.resolve(
            args.params,
            suites=[name],
            out_dir=out,
            tracking_uri=args.tracking_uri,
            no_mlflow=args.no_mlflow,
            ray_address=args.ray_address,
            no_ray=args.no_ray,
        )
        if name == "accuracy" and device.type == "cuda":  # the folder says cuda: train there
            run = replace(run, accuracy=run.accuracy_settings.model_copy(update={"use_gpu": True}))
        runs = run_papers(list(stage.papers), run)
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    except RunInterrupted as stop:  # Ctrl-C or SIGTERM: the finished papers are written
        print(stop.message("the next `dvc repro` measures the rest"), file=sys.stderr)
        return stop.exit_code
    for paper in runs:
        print(f"{paper.paper}: {len(paper.results)} claims in {paper.meta['run_seconds']:.1f} s")
    return stage_status(runs)
