"""LeNet-5 trains on the real Fashion-MNIST briefly (4,000 training images, the whole test split
scored after each of two short epochs, about 30 s on 2 cores) by the paper file's own recipe: the
error falls well below chance, and MLflow holds the per-epoch curve and the splits' digests.
Skipped where dataset-fashion-mnist is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from repro.claims import load_paper
from repro.tracking import training
from repro.train.config import FitConfig
from repro.train.fit import fit

REAL = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not (REAL / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not installed at {REAL} (make fashion-mnist)",
)


def test_lenet5_learns_fashion_mnist_and_mlflow_holds_the_curve(tmp_path: Path) -> None:
    recipe = next(r for r in load_paper("fashion_mnist").recipes if r.model == "lenet5")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = FitConfig(
        recipe=recipe.model_dump(),
        data_root=str(REAL),
        workers=0,
        epochs=2,
        max_steps_per_epoch=4000 // recipe.batch_size // 2,
        run_name="fm",
        storage_path=str(tmp_path / "runs"),
        tracking_uri=uri,
    )
    (record,) = fit(config).seeds
    errors = [e["top1_error"] for e in record["history"]]
    assert len(errors) == 2 and errors[-1] < 40.0  # chance is 90 %; ~28 % measured
    run = training.find_train_run(uri, "fm-seed0")
    assert run is not None and run["status"] == "FINISHED"
    curve = MlflowClient(uri).get_metric_history(run["run_id"], "top1_error")
    assert sorted(m.step for m in curve) == [1, 2]
    assert [m.value for m in sorted(curve, key=lambda m: m.step)] == pytest.approx(errors)
    assert run["params"]["dataset"] == "fashion_mnist" and run["params"]["eval_images"] == "10000"
    digests = [run["params"][f"{part}_digest"] for part in ("train", "eval")]
    assert len(set(digests)) == 2 and all(len(d) == 16 for d in digests)
