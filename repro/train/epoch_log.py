"""One MLflow run per seed of a recipe training, written by rank 0: the recipe's facts as
parameters, every epoch's numbers as metrics, the seed's record as the summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from repro.recipes import Recipe
    from repro.train.recipe_loop import FitConfig, SeedRun


# A seed record's numbers that EpochLog writes as the MLflow run's summary (those present).
SUMMARY_METRICS = ("top1_error", "top5_error", "map", "map50", "epochs")


class EpochLog:
    """Rank 0's MLflow runs (experiment "repro/train"), one per seed, through repro.tracking:
    the epoch losses as steps, the final errors as summary metrics. An epoch is logged once,
    even when a restart trains it again."""

    def __init__(self, config: FitConfig, enabled: bool) -> None:
        self.uri = config.tracking_uri if enabled else None
        self.config = config
        self.run_id: str | None = None
        self.logged: set[int] = set()

    def open(self, run: SeedRun, recipe: Recipe, facts: dict[str, Any]) -> None:
        if self.uri is None:
            return
        from repro import tracking

        params = {
            "recipe": recipe.name,
            "model": recipe.model,
            "seed": run.seed,
            "workers": run.pm.world,
            "optimizer": recipe.optimizer.model_dump_json(),
            "schedule": recipe.schedule.model_dump_json(),
            "augmentation": ",".join(recipe.augmentation),
            "epochs": self.config.epochs or recipe.epochs,
            "precision": self.config.precision,
            **facts,
        }
        name = f"{self.config.run_name}-seed{run.seed}"
        self.run_id = tracking.open_train_run(self.uri, name, params, {"repro.kind": "fit"})
        self.logged = tracking.logged_train_steps(self.uri, self.run_id)
        for entry in run.history:  # restored from a checkpoint; logged unless already there
            self.epoch(entry)

    def epoch(self, entry: dict[str, Any]) -> None:
        if self.uri is None or self.run_id is None or entry["epoch"] in self.logged:
            return
        from repro import tracking

        step = {"step": entry["epoch"], "loss": entry["loss"], "time": entry["time"]}
        tracking.log_train_steps(self.uri, self.run_id, [step])
        self.logged.add(entry["epoch"])

    def close(self, record: dict[str, Any] | None, status: str = "FINISHED") -> None:
        if self.uri is None or self.run_id is None:
            return
        from repro import tracking

        summary = {}
        if record is not None:
            summary = {k: float(record[k]) for k in SUMMARY_METRICS if record.get(k) is not None}
        tags = {"diverged": str(bool(record and record["diverged"]))}
        tracking.close_train_run(self.uri, self.run_id, summary, tags, status)
        self.run_id = None
