"""Settings: params.yaml as one model (a section per mapping, defaults here and nowhere else),
overlaid by the environment and then by command-line flags, so the precedence is flag, then
environment, then params.yaml, then the default. An unknown key, a wrong type or a value out of
range is an error that names the file and line, the variable or the flag."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from repro.errors import ReproError
from repro.files import load_yaml, read_user_file

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
Retime = Literal["auto", "always", "never"]
RETIME = get_args(Retime)
RETIME_ENV = "REPRO_RETIME_SPEED"
RETRAIN_ENV = "REPRO_RETRAIN_ACCURACY"
SPEED_PAPERS = ("fast_rcnn", "faster_rcnn", "googlenet", "rcnn", "yolo_v1")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        """`key:` left empty (YAML null) means the default."""
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data


class AccuracyParams(Section):
    """params.yaml `accuracy:` (REPRO_ACCURACY_<KEY>)."""

    workers: int = Field(1, ge=0)  # Ray Train data-parallel workers per run (0: in-process)
    use_gpu: bool = False
    seeds: int = Field(1, ge=1)  # training runs per recipe; 2 or more: a confidence interval
    epochs: float | None = Field(None, gt=0)  # every recipe's epochs (a short trial run)
    eval_limit: int | None = Field(None, ge=1)  # evaluate the first N images (noted in results)
    batch_size: int | None = Field(None, ge=1)  # the recipe's global batch (noted in results)
    storage: str = "~/ray_results/repro-accuracy"


class AccuracySettings(AccuracyParams):
    """The accuracy and dataset suites' knobs: `accuracy:` and the weights files to evaluate
    instead of training (params.yaml `weights:`, REPRO_WEIGHTS_<MODEL>, --weights)."""

    weights: dict[str, str] = {}  # model name -> state-dict file


class SpeedSettings(Section):
    """The speed suite's knobs (params.yaml `speed:`, REPRO_SPEED_<NAME>), the papers' values
    by default. Tests shrink proposals, the image and the scale: a full-size R-CNN pass (2000
    VGG-16 forward passes) takes about 20 minutes on 2 CPU cores."""

    proposals: int = Field(2000, gt=0)  # R-CNN's and Fast R-CNN's ~2k selective search boxes
    image_height: int = Field(375, gt=0)  # one synthetic VOC-sized image, VOC's most common size
    image_width: int = Field(500, gt=0)
    scale: int = Field(600, gt=0)  # Fast/Faster R-CNN test scale: the shorter side...
    max_size: int = Field(1000, gt=0)  # ...and the longer side at most this
    rcnn_batch: int = Field(64, gt=0)  # crops per CNN forward in R-CNN: memory, not a paper value
    warmup: int = Field(1, ge=0)  # untimed steps before timing each pipeline
    repeats: int = Field(3, gt=0)  # timed repeats; their median is the result
    min_repeat_s: float = Field(1.0, gt=0)  # fast steps repeat within a repeat to last this long
    budget_s: float = Field(300.0, gt=0)  # fewer repeats (at least 1) past this per pipeline
    seed: int = 0


class CommittedStage(Section):
    """A DVC stage whose results are committed under benchmarks/<kind>_claims/<environment>/:
    whether it measures again here (``mode``: always, never, or auto: only where torch sees a
    GPU), which papers, and the folder. The report folds the committed results in."""

    SECTION: ClassVar[str]  # its params.yaml section
    MODE: ClassVar[str]  # the field holding the mode, e.g. retime
    ENV: ClassVar[str]  # the environment variable over it
    COST: ClassVar[str]  # why auto keeps the committed results on a CPU
    papers: tuple[str, ...]
    out: Path

    @field_validator("retime", "retrain", mode="before", check_fields=False)
    @classmethod
    def _mode_text(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML reads true / false as booleans
            return "always" if value else "never"
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def mode(self) -> Retime:
        return getattr(self, self.MODE)

    def decide(self, has_gpu: bool) -> tuple[bool, str]:
        """(measure again?, why) for a machine with or without a GPU."""
        field = f"{self.SECTION}.{self.MODE}"
        if self.mode != "auto":
            return self.mode == "always", f"{field} is {self.mode}"
        if has_gpu:
            return True, f"{field} is auto and torch sees a GPU"
        return False, (
            f"{field} is auto and this machine has no GPU ({self.COST}: set it to always, or "
            f"{self.ENV}=always, to do it anyway)"
        )


class SpeedStageSettings(CommittedStage):
    """The DVC speed stage (params.yaml `speed_stage:`, REPRO_RETIME_SPEED, --retime)."""

    SECTION: ClassVar[str] = "speed_stage"
    MODE: ClassVar[str] = "retime"
    ENV: ClassVar[str] = RETIME_ENV
    COST: ClassVar[str] = "re-timing on 2 CPU cores takes about 10 minutes"
    retime: Retime = "auto"
    papers: tuple[str, ...] = SPEED_PAPERS
    out: Path = Path("benchmarks/speed_claims")


class AccuracyStageSettings(CommittedStage):
    """The DVC accuracy stage (params.yaml `accuracy_stage:`, REPRO_RETRAIN_ACCURACY,
    --retrain): trains the papers' recipes by the accuracy suite (`accuracy:` its knobs)."""

    SECTION: ClassVar[str] = "accuracy_stage"
    MODE: ClassVar[str] = "retrain"
    ENV: ClassVar[str] = RETRAIN_ENV
    COST: ClassVar[str] = "training on 2 CPU cores takes about 15 minutes"
    retrain: Retime = "never"
    papers: tuple[str, ...] = ("fashion_mnist",)
    out: Path = Path("benchmarks/accuracy_claims")


class DemoParams(Section):
    """params.yaml `demos:`, the embedded demonstrations' sizes (unset: the demo's own)."""

    digits_workers: list[int] = [0, 2]
    digits_seeds: int = Field(3, ge=1)
    digits_epochs: float | None = Field(None, gt=0)
    detection_epochs: int | None = Field(None, ge=1)
    detection_images: int | None = Field(None, ge=1)


class RayParams(Section):
    address: str = ""  # empty: a local Ray with this machine's CPUs (RAY_ADDRESS)


class MlflowParams(Section):
    tracking_uri: str = DEFAULT_TRACKING_URI  # MLFLOW_TRACKING_URI


class DataRoots(Section):
    """Dataset roots (REPRO_DATA_<NAME>); empty: not present."""

    imagenet: str = ""
    ilsvrc2014_det: str = ""
    voc2007: str = ""
    voc2010: str = ""
    voc2012: str = ""
    coco: str = ""
    cifar10: str = ""
    mnist: str = ""
    fashion_mnist: str = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
    sun397: str = ""


class Settings(Section):
    """The whole of params.yaml, after the environment and the flags."""

    papers: list[str] = []
    suites: list[str] = []  # empty: analytic
    accuracy: AccuracyParams = AccuracyParams()
    weights: dict[str, str | None] = {}  # model -> state-dict file to evaluate
    demos: DemoParams = DemoParams()
    ray: RayParams = RayParams()
    mlflow: MlflowParams = MlflowParams()
    data: DataRoots = DataRoots()
    speed: SpeedSettings = SpeedSettings()
    speed_stage: SpeedStageSettings = SpeedStageSettings()
    accuracy_stage: AccuracyStageSettings = AccuracyStageSettings()

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or DEFAULT_TRACKING_URI

    @property
    def ray_address(self) -> str | None:
        return self.ray.address or None

    @property
    def data_roots(self) -> dict[str, str]:
        return {name: root for name, root in self.data.model_dump().items() if root}

    def accuracy_settings(self) -> AccuracySettings:
        """`accuracy:` with the weights files, each checked to exist."""
        for model, path in self.weights.items():
            if path and not Path(path).expanduser().is_file():
                raise ReproError(
                    f"the weights file for {model} ({path}) does not exist.",
                    "correct the path in params.yaml weights:, REPRO_WEIGHTS_"
                    f"{model.upper()} or --weights, or remove it to train by the paper's recipe.",
                )
        weights = {m: str(Path(p).expanduser().resolve()) for m, p in self.weights.items() if p}
        return AccuracySettings(**self.accuracy.model_dump(), weights=weights)


# The environment over params.yaml: (section, key) -> variable. REPRO_WEIGHTS_<MODEL> adds any
# model (lower-cased), the others override the fields they name.
ENVIRONMENT: dict[tuple[str, str], str] = {
    ("ray", "address"): "RAY_ADDRESS",
    ("mlflow", "tracking_uri"): "MLFLOW_TRACKING_URI",
    ("speed_stage", "retime"): RETIME_ENV,
    ("accuracy_stage", "retrain"): RETRAIN_ENV,
    **{(s, f): f"REPRO_{s.upper()}_{f.upper()}" for s, m in
       (("accuracy", AccuracyParams), ("speed", SpeedSettings), ("data", DataRoots))
       for f in m.model_fields},
}  # fmt: skip
WEIGHTS_ENV = "REPRO_WEIGHTS_"
# The flags over the environment: keyword of load_settings -> (section, key or None, flag).
FLAGS: dict[str, tuple[str, str | None, str]] = {
    "ray_address": ("ray", "address", "--ray-address"),
    "tracking_uri": ("mlflow", "tracking_uri", "--tracking-uri"),
    "seeds": ("accuracy", "seeds", "--seeds"),
    "retime": ("speed_stage", "retime", "--retime"),
    "retrain": ("accuracy_stage", "retrain", "--retrain"),
    "suites": ("suites", None, "--suite"),
}


def load_settings(path: Path | str | None = None, **overlay: Any) -> Settings:
    """The settings from ``path`` (default ./params.yaml; a missing default file means the
    defaults) under the environment and the flags (parse_settings's ``overlay``)."""
    p = Path(path) if path else DEFAULT_PARAMS
    if path and not p.exists():
        raise ReproError(f"params file {p} does not exist.", "pass an existing --params file.")
    return parse_settings(read_user_file(p) if p.exists() else "", p, **overlay)


def parse_settings(
    text: str,
    path: Path | str = DEFAULT_PARAMS,
    *,
    env: Mapping[str, str] | None = None,
    weights: Sequence[str] | None = None,
    **flags: Any,
) -> Settings:
    """The settings of params.yaml text ``text`` (``path`` names it in errors) under the
    environment (``env``, default os.environ) and the flags given (None: not given): the
    keywords of FLAGS, and ``weights``, a list of MODEL=PATH."""
    data, node = load_yaml(text, path)  # a key given twice is an error, not dropped
    data = data or {}
    lines = _key_lines(node)
    if not isinstance(data, dict):
        raise ReproError(f"{path} must hold a mapping at the top level.", "see params.yaml.")
    env = os.environ if env is None else env
    over: dict[tuple[str, str | None], tuple[Any, str]] = {
        key: (env[var], var) for key, var in ENVIRONMENT.items() if env.get(var)
    }
    for var, value in env.items():
        if var.startswith(WEIGHTS_ENV) and value:
            over["weights", var.removeprefix(WEIGHTS_ENV).lower()] = (value, var)
    for name, value in flags.items():
        if value is not None and value != []:
            section, key, flag = FLAGS[name]
            over[section, key] = (value, flag)
    for flag in weights or []:
        model, sep, file = flag.partition("=")
        if not sep or not model or not file:
            raise ReproError(
                f"--weights {flag!r} is not of the form MODEL=PATH.",
                "pass e.g. --weights resnet50=/data/weights/resnet50.pt.",
            )
        over["weights", model] = (file, "--weights")
    merged = dict(data)
    for (section, key), (value, _) in over.items():
        if key is None:
            merged[section] = value
        elif isinstance(merged.get(section) or {}, dict):
            merged[section] = {**(merged.get(section) or {}), key: value}
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise _settings_error(exc, path, lines, over) from None


def _key_lines(node: yaml.Node | None, at: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """The line of every key and list entry in a composed YAML document, by its path."""
    lines: dict[tuple[Any, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*at, key.value)] = key.start_mark.line + 1
            lines.update(_key_lines(value, (*at, key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            lines[(*at, i)] = value.start_mark.line + 1
            lines.update(_key_lines(value, (*at, i)))
    return lines


EXPECTED = {
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
    "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false",
    "bool_type": "true or false", "string_type": "text", "list_type": "a list",
    "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "path_type": "a path",
}  # fmt: skip


def _settings_error(
    exc: ValidationError,
    path: Path | str,
    lines: Mapping[tuple[Any, ...], int],
    over: Mapping[tuple[str, str | None], tuple[Any, str]],
) -> ReproError:
    """The first problem in the file's order as an error naming where the value came from and
    the field."""

    def line_of(loc: tuple[Any, ...]) -> int | None:
        return next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)

    error = min(exc.errors(), key=lambda e: line_of(tuple(e["loc"])) or math.inf)
    loc, kind = tuple(error["loc"]), error["type"]
    dotted = ".".join(str(part) for part in loc)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    source = next((over[loc[:n]] for n in (2, 1) if loc[:n] in over), None)
    line = line_of(loc)
    where = f"{path}, line {line}" if line else str(path)
    if kind == "extra_forbidden":
        model: Any = Settings
        for part in loc[:-1]:
            model = model.model_fields[part].annotation
        known = list(model.model_fields)
        near = difflib.get_close_matches(str(loc[-1]), known, n=1)
        section = f" of `{'.'.join(map(str, loc[:-1]))}`" if len(loc) > 1 else ""
        return ReproError(
            f"{where}: unknown key `{dotted}`{more}.",
            (f"did you mean `{near[0]}`? " if near else "remove it. ")
            + f"The known keys{section} are {', '.join(known)}.",
        )
    expected = EXPECTED.get(kind)
    what = f"expects {expected}" if expected else error["msg"].replace("Input ", "", 1).lower()
    found, name = source or (error.get("input"), "")
    fix = f"correct `{dotted}` (the params.yaml in the repository shows every field)."
    if name.startswith("--"):
        where, fix = name, f"correct {name}."
    elif name:
        where, fix = f"environment variable {name}", f"set {name} to a valid value, or unset it."
    return ReproError(f"{where}: `{dotted}` {what}, found {found!r:.60}{more}.", fix)


def settings_of(args: Any) -> Settings:
    """The settings of a command whose parser has add_settings_flags."""
    return load_settings(
        getattr(args, "params", None),
        ray_address=getattr(args, "ray_address", None),
        tracking_uri=getattr(args, "tracking_uri", None),
    )


def add_settings_flags(parser: Any, *, ray: bool = True, mlflow: bool = True) -> None:
    """The flags every command that runs work shares, read by settings_of:
    --ray-address, --tracking-uri, --no-mlflow, --params."""
    if ray:
        parser.add_argument(
            "--ray-address",
            help="Ray cluster address (default: RAY_ADDRESS, "
            "params.yaml ray.address, else a local Ray with this machine's CPUs)",
        )
    if mlflow:
        parser.add_argument(
            "--tracking-uri",
            help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, "
            f"params.yaml mlflow.tracking_uri, else {DEFAULT_TRACKING_URI})",
        )
        parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    parser.add_argument("--params", help="params file (default: ./params.yaml if present)")
