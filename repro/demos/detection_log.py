"""The detection demo's training as an MLflow training run: a child of the demo's run in
repro/demos (as the digits demo's fits are), with the loss, learning rate, images/s and the
test split's VOC07 mAP per epoch (step = epoch), the trainval and test splits as dataset
inputs, and the host's CPU and memory sampled meanwhile (system/*).

The curve is bookkeeping: a store that fails mid-run is warned about once and the demo's
training and evaluation go on; its numbers still reach detection.json and detection.csv.
"""

from __future__ import annotations

import logging
import types
import uuid
from typing import Any

from repro.train.system_log import DEFAULT_INTERVAL_S, SystemLog

log = logging.getLogger("repro.demos")

EPOCH_KEYS = ("loss", "lr", "voc07_map", "train_s", "eval_s", "images_per_s")


def split_input(name: str, context: str, images: Any, source: str) -> dict[str, Any]:
    """One split as an MLflow dataset input (repro.tracking.log_datasets): its digest is the
    content of its images, as the digits demo's."""
    from repro.data.training_sets import dataset_digest

    return {
        "name": name,
        "context": context,
        "digest": dataset_digest(types.SimpleNamespace(images=images)),
        "source": source,
        "images": len(images),
    }


class DetectionFitLog:
    def __init__(
        self,
        uri: str,
        parent: str,
        params: dict[str, Any],
        datasets: list[dict[str, Any]],
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        from repro import tracking

        self.uri = uri
        self.failed = False
        self.last_epoch = 0
        self.last_point: dict[str, Any] = {}
        name = f"detection-fit-{uuid.uuid4().hex[:8]}"  # one MLflow run per demo run
        tags = {"repro.kind": "fit", "mlflow.parentRunId": parent}
        self.run_id = tracking.open_train_run(uri, name, params, tags, tracking.DEMO_EXPERIMENT)
        tracking.log_datasets(uri, self.run_id, datasets)
        self.system = SystemLog(uri, self.run_id, None, interval_s)

    def epoch(self, entry: dict[str, Any]) -> None:
        """Log one epoch's numbers (``entry["epoch"]`` counts from 1)."""
        self.last_epoch = int(entry["epoch"])
        if self.failed:
            return
        from repro import tracking

        step = {"step": entry["epoch"], "time": entry["time"]}
        step |= {k: entry[k] for k in EPOCH_KEYS if isinstance(entry.get(k), int | float)}
        try:
            tracking.log_train_steps(self.uri, self.run_id, [step], EPOCH_KEYS)
            self.last_point = step
        except Exception as exc:  # noqa: BLE001 - see the module's docstring
            self.failed = True
            log.warning(
                "detection demo: epoch %d is not logged to MLflow run %s (%s: %s); the demo goes "
                "on and its results are written to its files",
                self.last_epoch, self.run_id, type(exc).__name__, str(exc)[:200],
            )  # fmt: skip
            return
        self.system.flush()

    def close(self, metrics: dict[str, float], status: str = "FINISHED") -> None:
        """The final numbers (those that are not already the last point of a curve), and the
        end."""
        from repro import tracking

        self.system.close()
        if self.failed:  # its curve is incomplete: say so, if the store answers again
            try:
                tracking.close_train_run(self.uri, self.run_id, {}, {}, "FAILED")
            except Exception:  # noqa: BLE001 - the warning has been given
                pass
            return
        final = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        tracking.close_train_run(
            self.uri, self.run_id, final, {}, status, self.last_epoch, self.last_point
        )
