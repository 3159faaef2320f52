"""The claims registry: one YAML file per paper under ``repro/papers/``, one entry per table row.

A schema validates every file; errors name the file, the entry and the field at fault.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from repro.errors import ClaimFileError
from repro.files import load_yaml, read_user_file
from repro.recipes import Recipe, Source, Strict

PAPERS_DIR = Path(__file__).parent / "papers"
# A paper key and a claim id: lowercase words and digits joined by single dashes or underscores
# (kebab_case's characters), so a key names a file in its folder and never a path.
KEY_RULE = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")

Kind = Literal["analytic", "speed", "accuracy", "dataset"]
# A kind of claim is measured by the suite of that name (repro.suites), in this order.
SUITE_NAMES: tuple[str, ...] = get_args(Kind)

# Metrics the analytic suite computes from a built model (see repro/analytic.py).
ANALYTIC_METRICS = {
    "params": "trainable parameters, weights and biases",
    "weights": "parameters excluding biases (tables that say 'not counting biases')",
    "macs": "multiply-accumulates of conv and linear layers (papers' 'FLOPs'/'ops' columns)",
    "flops": "floating-point operations as torch.utils.flop_counter counts them (2 per MAC)",
    "activations": "elements of the input and of every layer output (conv, pool, linear, norm)",
    "activation_bytes": "activations times the bytes of one element (fp32: 4)",
    "output_shape": "output shape of one image, (C, H, W) without the batch dimension",
    "output_channels": "channels (first dimension) of the output of one image",
    "output_size": "spatial size (H, W) of the output of one image",
}
SHAPE_METRICS = {"output_shape", "output_size"}
# Metrics that count or measure something (parameters, operations, images, classes, pixels,
# seconds, rates, ratios): a claim of zero or less is a slip, save a layer's parameters or
# operations (a pooling layer has none).
POSITIVE_METRICS = {
    *ANALYTIC_METRICS, "time_per_image", "fps", "speedup", "time_ratio", "training_speedup",
    "training_time", "training_time_ratio", "num_classes", "num_images", "num_labels",
    "num_objects", "image_side", "train_images_per_class", "proposals_per_image",
    "objects_per_image", "anchor_width", "anchor_height", "feature_cache_size",
}  # fmt: skip
ZERO_IN_A_LAYER = {"params", "weights", "macs", "flops"}
# Rates in percent, between 0 and 100 (the gains of COMPARISON_METRICS may be negative).
PERCENT_METRICS = {
    "accuracy", "top1_accuracy", "top5_accuracy", "top1_error", "top5_error", "map", "map50",
    "avg_iou",
}  # fmt: skip
# A dataset claim's `params`, read by the dataset suite (repro.data.anchors.PARAMS describes
# them): any other key would be ignored.
CLAIM_PARAMS = ("k", "priors", "index", "input_size", "seed", "restarts", "split")

UNIT_SCALE: dict[str, float] = {
    "count": 1.0, "K": 1e3, "M": 1e6, "Ki": 2.0**10, "Mi": 2.0**20, "G": 1e9, "x10^9": 1e9,
    "B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 2.0**10, "MiB": 2.0**20, "GiB": 2.0**30,
    "ratio": 1.0, "x": 1.0, "%": 1.0, "s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "px": 1.0,
    "fps": 1.0, "shape": 1.0,
}  # fmt: skip


class Tolerance(Strict):
    """Allowed difference between measured and claimed, in the claim's unit.

    ``rel`` is a fraction of the claimed value, ``abs`` an absolute difference; with both,
    either suffices. Neither (or the string ``exact`` in YAML) means exact equality."""

    rel: float | None = Field(default=None, ge=0)
    abs: float | None = Field(default=None, ge=0)

    @property
    def exact(self) -> bool:
        return not self.rel and not self.abs

    def describe(self) -> str:
        parts = []
        if self.rel:
            parts.append(f"±{self.rel * 100:g}%")
        if self.abs:
            parts.append(f"±{self.abs:g}")
        return " or ".join(parts) if parts else "exact"

    @classmethod
    def from_description(cls, text: str) -> Tolerance:
        """The inverse of :meth:`describe`, for result rows read back from a CSV or MLflow:
        "±2% or ±0.5" -> Tolerance(rel=0.02, abs=0.5). Text it does not know (a negative or
        not finite bound among it) is exact."""
        rel = abs_ = None
        for part in str(text).split(" or "):
            part = part.strip().lstrip("±")
            try:
                bound = float(part.removesuffix("%")) if part and part != "exact" else -1.0
            except ValueError:
                continue
            if 0 <= bound < math.inf:
                rel, abs_ = (bound / 100, abs_) if part.endswith("%") else (rel, bound)
        return cls(rel=rel, abs=abs_)

    def band(self, claimed: float) -> float:
        """The half-width of the accepted band as a fraction of ``claimed`` (either bound
        suffices, so the wider one)."""
        widths = [self.rel or 0.0]
        if self.abs and claimed:
            widths.append(self.abs / abs(claimed))
        return max(widths)


class ModelRef(Strict):
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    input_size: list[int] | None = Field(
        default=None, description="(C, H, W); defaults to the registered paper input size"
    )

    @field_validator("kwargs")
    @classmethod
    def _finite_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        for name, value in kwargs.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"kwargs.{name} is {value}, not a finite number")
        return kwargs

    def key(self) -> str:
        """A stable identifier for grouping claims measured on the same built model."""
        kw = ",".join(f"{k}={v}" for k, v in sorted(self.kwargs.items()))
        size = "x".join(map(str, self.input_size)) if self.input_size else ""
        return f"{self.name}({kw})@{size}" if (kw or size) else self.name


# Ablation metrics: (the metric each variant is evaluated on, +1 for model - baseline or -1
# for baseline - model), so a positive value is the improvement the paper reports.
COMPARISON_METRICS: dict[str, tuple[str, int]] = {
    "top1_error_reduction": ("top1_error", -1),
    "top5_error_reduction": ("top5_error", -1),
    "map_gain": ("map", 1),
}

SPEED_METRICS = {
    "time_per_image": "seconds per image of the timed pipeline (absolute: hardware-dependent)",
    "fps": "images per second of the timed pipeline (absolute: hardware-dependent)",
    "speedup": "time per image of `timing.relative_to` / that of `timing.pipeline`",
    "time_ratio": "time per image of `timing.pipeline` / that of `timing.relative_to`",
}
SPEED_RATIO_METRICS = {"speedup", "time_ratio"}
SPEED_UNITS = {
    "time_per_image": ("s", "ms", "min", "h"),
    "fps": ("fps",),
    "speedup": ("x", "ratio"),
    "time_ratio": ("x", "ratio"),
}


class SpeedTiming(Strict):
    """What the speed suite times for a speed claim (the pipelines of
    repro/suites/speed/timed.py: R-CNN, Fast R-CNN, or one forward pass of a registered
    model)."""

    pipeline: str = Field(description="timed pipeline, e.g. fast_rcnn_vgg16 or yolov1")
    relative_to: str | None = Field(
        default=None, description="the other pipeline of a ratio claim (speedup, time_ratio)"
    )
    proposals: bool = Field(
        default=False,
        description="add the region proposal method's time (selective search) to pipelines "
        "that take external proposals (R-CNN, Fast R-CNN)",
    )
    batch: int = Field(default=1, ge=1, description="images per forward pass (per-image time)")


class Claim(Strict):
    id: str = Field(default="", description="unique within the paper; derived when omitted")
    table: str
    row: str
    metric: str
    unit: str
    value: float | list[int]
    kind: Kind
    tolerance: Tolerance
    source: Source
    also: list[Source] = Field(
        default_factory=list, description="other seeds that print the same number (encoded once)"
    )
    model: ModelRef | None = None
    layer: str | list[str] | None = Field(
        default=None,
        description="module path for per-layer rows; a list sums additive metrics over modules "
        "(a table row covering several layers)",
    )
    relative_to: ModelRef | None = Field(
        default=None, description="measure the ratio metric(model) / metric(relative_to)"
    )
    baseline: ModelRef | None = Field(
        default=None,
        description="accuracy claims comparing two variants (an ablation, e.g. "
        "`top1_error_reduction`, `map_gain`): the variant `model` is compared with, both "
        "trained and evaluated by the claim's recipe",
    )
    dataset: str | None = None
    protocol: str | None = None
    hardware: str | None = Field(default=None, description="the paper's hardware, for speed")
    timing: SpeedTiming | None = Field(
        default=None, description="speed claims the speed suite measures: what it times"
    )
    recipe: str | None = Field(
        default=None,
        description="accuracy claims: the paper recipe (`recipes[].name`) that trains and "
        "evaluates the model; by default the paper's recipe for this model and dataset",
    )
    ensemble: int = Field(
        default=1, ge=1, description="accuracy claims: models averaged in the paper's entry"
    )
    params: dict[str, int | float | str] = Field(
        default_factory=dict,
        description="dataset claims: parameters of the analysis (e.g. `k` clusters, the "
        "`index` of one anchor), read by the suite that measures the metric",
    )
    note: str = ""

    @field_validator("tolerance", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        return {} if v == "exact" else v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if v and not KEY_RULE.fullmatch(v):
            raise ValueError(key_problem(v, "claim id"))
        return v

    @field_validator("value", mode="before")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"`value` is {v}, not a finite number")
        return v

    @field_validator("params")
    @classmethod
    def _known_params(cls, v: dict[str, int | float | str]) -> dict[str, int | float | str]:
        unknown = sorted(set(v) - set(CLAIM_PARAMS))
        if unknown:
            raise ValueError(
                f"unknown key {', '.join(unknown)} (the dataset suite reads "
                f"{', '.join(CLAIM_PARAMS)})"
            )
        return v

    @field_validator("model", "relative_to", "baseline", mode="before")
    @classmethod
    def _model_str(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str) -> str:
        if v not in UNIT_SCALE:
            raise ValueError(f"unknown unit {v!r}; use one of {', '.join(UNIT_SCALE)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Claim:
        if not self.id:
            self.id = kebab_case(f"{self.table}-{self.row}-{self.metric}")
            if not self.id:
                raise ValueError("table, row and metric hold no letter or digit: set `id`")
        if self.params and self.kind != "dataset":
            raise ValueError("`params` belongs to dataset claims (kind: dataset); remove it")
        problem = self._value_problem()
        if problem:
            raise ValueError(problem)
        if self.kind == "analytic":
            if self.metric not in ANALYTIC_METRICS:
                raise ValueError(
                    f"analytic metric {self.metric!r} is not computed by the analytic suite; "
                    f"use one of {', '.join(ANALYTIC_METRICS)}"
                )
            if self.model is None:
                raise ValueError("an analytic claim needs `model` (a registered model name)")
        if (self.metric in SHAPE_METRICS) != isinstance(self.value, list):
            raise ValueError(
                "`value` is a list exactly when metric is output_shape (C, H, W) "
                "or output_size (H, W)"
            )
        if isinstance(self.layer, list) and self.metric in (*SHAPE_METRICS, "output_channels"):
            raise ValueError(f"a list of layers can be summed, but {self.metric} cannot")
        if self.timing is not None:
            if self.kind != "speed":
                raise ValueError("`timing` belongs to speed claims (kind: speed)")
            if self.metric not in SPEED_METRICS:
                raise ValueError(
                    f"a timed speed claim measures one of {', '.join(SPEED_METRICS)}, "
                    f"not {self.metric!r}"
                )
            if self.unit not in SPEED_UNITS[self.metric]:
                raise ValueError(
                    f"{self.metric} is in one of {', '.join(SPEED_UNITS[self.metric])}, "
                    f"not {self.unit!r}"
                )
            if (self.metric in SPEED_RATIO_METRICS) != (self.timing.relative_to is not None):
                raise ValueError(
                    "`timing.relative_to` is set exactly when metric is speedup or time_ratio"
                )
        if self.kind in ("accuracy", "dataset") and not self.dataset:
            raise ValueError(f"a {self.kind} claim needs `dataset`")
        if self.baseline is not None and (
            self.kind != "accuracy" or self.metric not in COMPARISON_METRICS or self.model is None
        ):
            raise ValueError(
                "`baseline` belongs to accuracy claims that compare `model` with it: metric one "
                f"of {', '.join(COMPARISON_METRICS)}, and `model` set"
            )
        return self

    def _value_problem(self) -> str:
        """Why ``value`` cannot be what the metric measures (a count below zero, a rate past
        100%), or ""."""
        values = self.value if isinstance(self.value, list) else [self.value]
        if self.metric in POSITIVE_METRICS:
            may_be_zero = self.metric in ZERO_IN_A_LAYER and self.layer and self.relative_to is None
            low = min(values, default=1)
            if low < 0 or (low == 0 and not may_be_zero):
                least = "0 or more" if may_be_zero else "above 0"
                return (
                    f"`value` {self.value} cannot be {self.metric}: it counts or measures "
                    f"something, so it is {least} (0 only for one layer's params, weights, "
                    "macs or flops)"
                )
        if self.metric in PERCENT_METRICS and self.unit == "%" and not 0 <= values[0] <= 100:
            return f"`value` {self.value} cannot be {self.metric} in %: it is between 0 and 100"
        return ""

    @property
    def scale(self) -> float:
        return UNIT_SCALE[self.unit]

    @property
    def layer_text(self) -> str:
        return " + ".join(self.layer) if isinstance(self.layer, list) else (self.layer or "")


class Paper(Strict):
    paper: str = Field(description="key; must equal the file name without .yaml")
    title: str
    authors: str
    year: int
    venue: str = ""
    claims: list[Claim]
    recipes: list[Recipe] = Field(default_factory=list)
    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> str:
        return str(self._path) if self._path else f"{self.paper}.yaml"

    @field_validator("paper")
    @classmethod
    def _key(cls, v: str) -> str:
        if not KEY_RULE.fullmatch(v):
            raise ValueError(key_problem(v, "paper key"))
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> Paper:
        seen: set[str] = set()
        for c in self.claims:
            if c.id in seen:
                raise ValueError(f"claim id {c.id!r} appears twice; give each entry a unique `id`")
            seen.add(c.id)
        names = [r.name for r in self.recipes]
        if len(set(names)) != len(names):
            raise ValueError("two recipes share a `name`; give each a unique one")
        for c in self.claims:
            if c.recipe is not None and c.recipe not in names:
                raise ValueError(
                    f"claim {c.id!r} names recipe {c.recipe!r}, which is not in `recipes` "
                    f"(known: {', '.join(names) or 'none'})"
                )
        return self

    def recipe_for(self, claim: Claim) -> Recipe | None:
        """The recipe that measures ``claim``: the one it names, else the only recipe for its
        model and dataset."""
        if claim.recipe is not None:
            return next(r for r in self.recipes if r.name == claim.recipe)
        if claim.model is None:
            return None
        found = [
            r for r in self.recipes if r.model == claim.model.name and r.dataset == claim.dataset
        ]
        return found[0] if len(found) == 1 else None


def key_problem(key: object, what: str = "paper key") -> str:
    """Why ``key`` is not a key by KEY_RULE (a path, upper case, empty), or ""."""
    if isinstance(key, str) and KEY_RULE.fullmatch(key):
        return ""
    return (
        f"{what} {key!r:.80} is not lowercase letters and digits joined by single - or _ "
        "(a file name without .yaml, never a path)"
    )


def check_key(key: object, what: str = "paper key") -> str:
    """``key`` when it follows KEY_RULE (checked before a path is built from it); else a
    ClaimFileError naming it."""
    problem = key_problem(key, what)
    if problem:
        raise ClaimFileError(
            f"{problem}.", "name a paper as `repro papers` lists it: its file name without .yaml."
        )
    return str(key)


def kebab_case(text: str) -> str:
    """Lowercase words and digits joined by single dashes (claim ids, recipe names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _locate(data: Any, loc: tuple[Any, ...]) -> str:
    """A pydantic error location as 'entry claims[3] (table2-a-params), field tolerance.rel'."""
    if len(loc) < 2 or loc[0] not in ("claims", "recipes") or not isinstance(loc[1], int):
        return "field " + ".".join(str(x) for x in loc) if loc else "top level"
    key, idx, rest = loc[0], loc[1], [str(x) for x in loc[2:]]
    entry = data.get(key, [])[idx] if isinstance(data, dict) else None
    ident = ""
    if isinstance(entry, dict):
        ident = entry.get("id") or entry.get("name") or ""
        if not ident and key == "claims":
            ident = f"{entry.get('table')} / {entry.get('row')}"
    where = f"entry {key}[{idx}] ({ident})" if ident else f"entry {key}[{idx}]"
    return f"{where}, field {'.'.join(rest)}" if rest else where


def load_paper_file(path: Path) -> Paper:
    path = Path(path)
    try:
        text = read_user_file(path, ClaimFileError)
    except FileNotFoundError:
        raise ClaimFileError(
            f"paper file {path} does not exist.",
            f"list the papers with `repro papers`; paper files live in {PAPERS_DIR}.",
        ) from None
    data, _ = load_yaml(text, path, ClaimFileError)
    if not isinstance(data, dict):
        raise ClaimFileError(
            f"{path} must hold a mapping with keys paper, title, authors, year, claims.",
            "see repro/papers/README.md for the format.",
        )
    try:
        paper = Paper.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_locate(data, e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise ClaimFileError(
            f"{path} does not match the claims schema: {problems}{more}.",
            "correct the named field; repro/papers/README.md describes every field.",
        ) from None
    if paper.paper != path.stem:
        raise ClaimFileError(
            f"{path}: `paper: {paper.paper}` differs from the file name {path.stem!r}.",
            f"rename the file to {paper.paper}.yaml or set `paper: {path.stem}`.",
        )
    paper._path = path
    return paper


def paper_path(key: str, papers_dir: Path | None = None) -> Path:
    return Path(papers_dir or PAPERS_DIR) / f"{check_key(key)}.yaml"


def list_papers(papers_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in Path(papers_dir or PAPERS_DIR).glob("*.yaml"))


def load_paper(key: str, papers_dir: Path | None = None) -> Paper:
    path = paper_path(key, papers_dir)
    if not path.exists():
        known = list_papers(papers_dir)
        raise ClaimFileError(
            f"no paper {key!r}: {path} does not exist (known: {', '.join(known)}).",
            "pick one of the known papers, or add a YAML file for it to repro/papers/.",
        )
    folder = path.parent.resolve()
    if not path.resolve().is_relative_to(folder):
        raise ClaimFileError(
            f"paper file {path} is a link to {path.resolve()}, outside {folder}.",
            f"copy the paper file into {folder} instead of linking to it.",
        )
    return load_paper_file(path)
