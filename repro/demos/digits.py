"""LeNet-5 trained to convergence on real handwritten digits, on 1 and on 2 Ray Train workers.

The data are scikit-learn's 1,797 real 8x8 digits, upsampled to 28x28 and centred in LeNet-5's 32x32
input (as the paper centred MNIST's digits in a larger field), normalised as the paper did
(background -0.1, ink 1.175); a fixed stratified 75/25 split gives 1,347 training and 450 test
images (repro.data.training_sets). Every worker count trains the same recipe with the same global
batch (2 workers: half of it each, gradients averaged by DDP) for each seed, and the test errors are
summarised as a mean with its 95% Student t interval. Two worker counts agree "within noise" when
Welch's 95% interval of the difference of their means contains 0.

Loss: `lenet5` returns -y_i, the negated RBF penalties, and we minimise cross-entropy on them:
-log softmax(-y)_D = y_D + log sum_i exp(-y_i). That is the paper's MAP criterion (LeCun et al.
1998, eq. 9), y_D + log(exp(-j) + sum_i exp(-y_i)), without the constant j of its "rubbish"
class (the limit j -> infinity): the correct class's penalty is pulled down while the others'
are pushed up. The paper trained with stochastic diagonal Levenberg-Marquardt for 20 passes; we
use SGD with momentum 0.9 and batches of 16, a one-epoch warm-up and a cosine decay over 24
passes, on small affine distortions of the training digits (augment.SmallAffine: rotation within
8 degrees, scale 0.9-1.1, horizontal shear within 10 degrees, shift within 2 pixels).

How the settings were chosen, on a validation split only (the test split was not loaded): "val"
is 269 images carved, stratified and seeded, from the 1,347 training images; each setting was
trained on the other 1,078 ("train-minus-val") for seeds 0, 1, 2 and scored on val. The grid:
digit size in the field 20/24/28 pixels x epochs 16/24/32 x learning rate 0.002/0.004/0.006 x
augmentation none/random_shift/affine (81 points), then lr 0.001 at 24 and 28 pixels, 24 and 32
epochs with affine (the best points sat at the grid's lowest lr); benchmarks/digits_sweep.py,
every point in benchmarks/results/digits_sweep_val.csv, the choice in its .json. The lowest mean
val error, 1.73%, was shared by 28 px/24 epochs, 28 px/32 epochs and 24 px/32 epochs (all lr
0.002, affine); the rule fixed beforehand (ties: fewer epochs) kept 28 pixels, 24 epochs. Without
augmentation the best was 3.10%. Learning rates of 0.006 left 47 of 81 runs (0.004: 4 of 81) at
20-90% error, most at 90% (one class for all): the squared RBF penalties give large gradients.

Test, measured once with that recipe trained on all 1,347 training images, seeds 0-4 (CPU, one
torch thread per worker): one process 2.49% [95% CI 2.13, 2.85]; 2 Ray Train DDP workers 2.98%
[2.48, 3.48]; difference -0.49 points, Welch 95% interval [-1.01, 0.03]: the same within noise,
both means under the 3% target (`ACCEPT_ERROR`), the 2-worker interval reaching above it
(benchmarks/results/demo_digits_workers_*). Without augmentation, 20 steps of 1 process and of 2
DDP workers end at the same weights to 1e-8; with it each rank draws its own distortions, so the
runs differ as two seeds do.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro.demos import write_outputs
from repro.evaluation.stats import mean_ci, welch_same
from repro.execution import state as execution
from repro.recipes import Recipe
from repro.train.fit import FitConfig, fit

log = logging.getLogger("repro.demos.digits")

DEMO = "digits-lenet5"
ACCEPT_ERROR = 3.0  # %: the target the demo reports against ("converged" in the JSON)
CSV_COLUMNS = (
    "demo",
    "workers",
    "training",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "seeds",
    "values",
    "epochs",
    "seconds",
    "device",
    "torch",
)

DIGITS_RECIPE = Recipe.model_validate(
    {
        "name": "lenet5-digits",
        "model": "lenet5",
        "dataset": "digits",
        "train_split": "train",
        "eval_split": "test",
        "source": {"seed": "lenet", "section": "demo: LeNet-5 on scikit-learn's digits"},
        "optimizer": {"name": "sgd", "lr": 0.002, "momentum": 0.9},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "batch_size": 16,
        "epochs": 24,
        "input_size": 32,
        "augmentation": ["affine"],
        "evaluation": {"resize": 32, "crop": 32, "crops": 1, "metric": "top1_error"},
        "note": "SGD with momentum instead of the paper's SDLM. The digit size in the field "
        "(28 px of 20/24/28), epochs (24 of 16/24/32), learning rate (0.002 of 0.002/0.004/"
        "0.006, and 0.001 checked) and augmentation (affine of none/random_shift/affine) were "
        "chosen on the val split (269 images carved from train; trained on the other 1,078), "
        "seeds 0-2, by benchmarks/digits_sweep.py (benchmarks/results/digits_sweep_val.csv); "
        "the test split was then measured once, trained on all 1,347 training images.",
    }
)


def _compare(a: list[float], b: list[float]) -> dict[str, Any]:
    if len(a) < 2 or len(b) < 2:
        return {"same_within_noise": None, "why": "Welch's test needs 2 seeds or more per side"}
    result = welch_same(a, b)
    return {
        "same_within_noise": bool(result.same),
        "difference": result.diff,
        "difference_ci95": list(result.ci),
        "test": "Welch t, 95%: the interval of mean(a) - mean(b) contains 0",
    }


def _train(
    workers: int,
    seeds: Sequence[int],
    runs_dir: Path,
    ray_address: str | None,
    tracking_uri: str | None,
    epochs: float | None,
    mlflow_parent: str | None = None,
) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    config = FitConfig(
        recipe=DIGITS_RECIPE.model_dump(),
        workers=workers,
        seeds=list(seeds),
        epochs=epochs,
        run_name=f"{DEMO}-w{workers}-{stamp}",
        storage_path=str(runs_dir),
        tracking_uri=tracking_uri,
        ray_address=ray_address,
        loader_workers=0,  # 1,347 tensors in memory: loader processes would only cost start-up
        checkpoint_every_epoch=False,
        channels_last=True,  # about 1.4x faster on CPUs for LeNet-5's small convolutions
        torch_threads=1,  # one per worker, as Ray gives each a CPU (also in-process: workers=0)
        log_model=True,  # the trained LeNet-5 of each seed, loadable with mlflow.pytorch
        mlflow_experiment="demos" if mlflow_parent else "train",
        mlflow_parent=mlflow_parent,
    )
    start = time.perf_counter()
    result = fit(config)
    seconds = time.perf_counter() - start
    for record in result.seeds:
        errors = ", ".join(f"{e['top1_error']:.2f}" for e in record["history"])
        log.info(
            "%d worker(s), seed %d: test error %.2f%% after %s epochs (per epoch: %s; "
            "last loss %.4f)",
            workers,
            record["seed"],
            record["top1_error"],
            record["epochs"],
            errors,
            record["history"][-1]["loss"],
        )
    values = [float(r["top1_error"]) for r in result.seeds]
    mean, low, high = mean_ci(values)
    log.info(
        "%d worker(s): test error %.2f%% (95%% CI %.2f-%.2f) over seeds %s in %.1f s",
        workers,
        mean,
        low,
        high,
        list(seeds),
        seconds,
    )
    return {
        "workers": workers,
        "values": values,
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "seconds": seconds,
        "result": result.as_dict(),
    }


def _rows(runs: list[dict[str, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        env = run["result"]["environment"]
        history = run["result"]["seeds"][0]["history"]
        rows.append(
            {
                "demo": DEMO,
                "workers": run["workers"],
                "training": (
                    "one process, no Ray"
                    if run["workers"] == 0
                    else f"{run['workers']} Ray Train worker(s), DDP"
                ),
                "metric": "test_top1_error_pct",
                "mean": round(run["mean"], 4),
                "ci_low": round(run["ci_low"], 4),
                "ci_high": round(run["ci_high"], 4),
                "seeds": ";".join(str(s) for s in seeds),
                "values": ";".join(f"{v:.4f}" for v in run["values"]),
                "epochs": history[-1]["epoch"] if history else 0,
                "seconds": round(run["seconds"], 2),
                "device": env.get("device", ""),
                "torch": env.get("torch", ""),
            }
        )
    return rows


def run_digits_demo(
    workers: Sequence[int] = (1, 2),
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: Path | None = None,
    ray_address: str | None = None,
    tracking_uri: str | None = None,
    epochs: float | None = None,
    mlflow_parent: str | None = None,
) -> dict[str, Any]:
    """Train LeNet-5 on the digits for every worker count (0: in this process, no Ray) and
    seed; returns (and writes to ``out_dir``/digits.json and digits.csv) the per-seed records,
    the mean test error with its 95% interval per worker count, and whether the worker counts
    agree within noise. ``epochs`` overrides the recipe's (quick checks only)."""
    started_ray = not execution.is_initialized()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="repro-digits-") as tmp:
        runs_dir = (Path(out_dir) / "runs") if out_dir is not None else Path(tmp)
        try:
            runs = [
                _train(w, seeds, runs_dir, ray_address, tracking_uri, epochs, mlflow_parent)
                for w in workers
            ]
        finally:
            if started_ray and any(w > 0 for w in workers):
                execution.shutdown()
    total = time.perf_counter() - start
    comparison = (
        _compare(runs[0]["values"], runs[1]["values"]) if len(runs) >= 2 else {"skipped": True}
    )
    accepted = all(r["mean"] < ACCEPT_ERROR for r in runs)
    report = {
        "demo": DEMO,
        "recipe": DIGITS_RECIPE.model_dump(),
        "epochs": epochs or DIGITS_RECIPE.epochs,
        "seeds": list(seeds),
        "runs": runs,
        "comparison": comparison,
        "acceptance": {
            "test_error_below_pct": ACCEPT_ERROR,
            "converged": accepted,
            "same_within_noise": comparison.get("same_within_noise"),
        },
        "conclusion": _conclusion(runs, comparison, accepted),
        "seconds_total": total,
        "rows": _rows(runs, seeds),
    }
    if out_dir is not None:
        write_outputs(Path(out_dir), "digits", report, CSV_COLUMNS, report["rows"])
    log.info("%s (%.1f s in all)", report["conclusion"], total)
    return report


def _conclusion(runs: list[dict[str, Any]], comparison: dict[str, Any], accepted: bool) -> str:
    parts = [
        f"{r['workers']} worker(s): {r['mean']:.2f}% [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        for r in runs
    ]
    text = "LeNet-5 digits test error " + "; ".join(parts) + "."
    text += f" {'All below' if accepted else 'NOT all below'} {ACCEPT_ERROR:g}%."
    same = comparison.get("same_within_noise")
    if same is not None:
        text += (
            f" {runs[0]['workers']} and {runs[1]['workers']} workers are "
            f"{'the same' if same else 'NOT the same'} within noise (Welch 95%)."
        )
    return text
