"""One MLflow run per seed of a recipe training, written by rank 0: the recipe's facts as
parameters, every epoch's numbers as metrics, the seed's record as the summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from repro.train.system_log import SystemLog

if TYPE_CHECKING:
    from repro.recipes import Recipe
    from repro.train.recipe_loop import FitConfig, SeedRun


# A seed record's numbers that EpochLog writes as the MLflow run's summary (those present).
SUMMARY_METRICS = ("top1_error", "top5_error", "map", "map50", "epochs")
# An epoch's numbers logged with step = epoch (those present), plus images_per_s.
EPOCH_METRICS = ("loss", "lr", "top1_error", "top5_error", "map", "map50", "train_s")


class EpochLog:
    """Rank 0's MLflow runs (experiment "repro/train"), one per seed, through repro.tracking:
    the epoch losses as steps, the final errors as summary metrics. An epoch is logged once,
    even when a restart trains it again."""

    def __init__(self, config: FitConfig, enabled: bool) -> None:
        self.uri = config.tracking_uri if enabled else None
        self.config = config
        self.recipe: Any = None
        self.classes = 0
        self.last_epoch: dict[str, Any] = {}
        self.run_id: str | None = None
        self.logged: set[int] = set()
        self.system: SystemLog | None = None

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
        self.recipe, self.classes = recipe, int(facts.get("classes") or 0)
        tags = {"repro.kind": "fit"}
        if self.config.mlflow_parent:
            tags["mlflow.parentRunId"] = self.config.mlflow_parent
        self.run_id = tracking.open_train_run(
            self.uri, name, params, tags, self.config.mlflow_experiment
        )
        self.logged = tracking.logged_train_steps(self.uri, self.run_id)
        self.system = SystemLog(self.uri, self.run_id, run.pm.device, self.config.system_metrics_s)
        if not self.logged:  # a new run (a resumed one has its inputs already)
            tracking.log_datasets(self.uri, self.run_id, datasets_of(facts))
        for entry in run.history:  # restored from a checkpoint; logged unless already there
            self.epoch(entry)

    def epoch(self, entry: dict[str, Any]) -> None:
        if self.uri is None or self.run_id is None or entry["epoch"] in self.logged:
            return
        from repro import tracking

        step = {"step": entry["epoch"], "time": entry["time"]}
        step |= {k: entry[k] for k in EPOCH_METRICS if isinstance(entry.get(k), int | float)}
        if entry.get("images") and entry.get("train_s"):
            step["images_per_s"] = entry["images"] / entry["train_s"]
        tracking.log_train_steps(self.uri, self.run_id, [step], (*EPOCH_METRICS, "images_per_s"))
        self.last_epoch = step
        self.logged.add(entry["epoch"])
        if self.system is not None:
            self.system.flush()

    def close(self, record: dict[str, Any] | None, status: str = "FINISHED") -> None:
        if self.uri is None or self.run_id is None:
            return
        from repro import tracking

        if self.system is not None:
            self.system.close()
            self.system = None
        summary = {}
        if record is not None:
            summary = {k: float(record[k]) for k in SUMMARY_METRICS if record.get(k) is not None}
        tags = {"diverged": str(bool(record and record["diverged"]))}
        if self.config.log_model and record is not None and record.get("weights"):
            try:
                model, example = self._trained(record["weights"])
                tracking.log_torch_model(self.uri, self.run_id, model, example)
            except Exception as exc:  # noqa: BLE001 - the trained numbers are logged regardless
                tags["model_not_logged"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        last = max((int(e) for e in self.logged), default=0)
        tracking.close_train_run(
            self.uri, self.run_id, summary, tags, status, last, self.last_epoch
        )
        self.run_id = None

    def _trained(self, weights: str) -> tuple[Any, Any]:
        """The seed's network with its final weights, and an input for the model signature."""
        import torch

        from repro.models import get_model_spec

        spec = get_model_spec(self.recipe.model)
        kwargs = dict(self.recipe.model_kwargs)
        if self.classes:
            kwargs["num_classes"] = self.classes
        model = spec.build(**kwargs)
        model.load_state_dict(torch.load(weights, weights_only=True))
        return model.eval(), spec.example_input(2)


def datasets_of(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The training and evaluation splits of a plan's facts (repro.train.fit), as MLflow inputs."""
    return [
        {
            "name": f"{facts.get('dataset')}/{facts.get(f'{part}_split')}",
            "context": context,
            "digest": facts.get(f"{part}_digest") or "unknown",
            "source": facts.get("data_source"),
            "images": facts.get(f"{part}_images"),
        }
        for part, context in (("train", "train"), ("eval", "eval"))
        if facts.get("dataset")
    ]
