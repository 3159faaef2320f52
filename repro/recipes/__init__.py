"""Training and evaluation recipes: how a paper trained and tested a network, as data beside its
claims (the `recipes:` list of a paper YAML). The accuracy suite trains by a recipe (or takes
weights a user supplies) and evaluates by its `evaluation` block.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from repro.errors import ReproError

AUGMENTATIONS = {
    "random_crop": "random crop of `input_size` from the image resized to `resize` (shorter side)",
    "random_resized_crop": "Inception-style crop of 8%-100% of the area, aspect 3/4-4/3",
    "scale_jitter": "shorter side drawn from `scale_range` before the random crop (VGG)",
    "hflip": "horizontal flip with probability 0.5",
    "pca_lighting": "AlexNet's PCA colour noise on RGB (std 0.1)",
    "color_jitter": "photometric distortions (brightness, contrast, saturation)",
    "pad_crop": "pad 4 pixels and take a random crop of the input size (CIFAR)",
    "translate_scale": "random scaling and translation up to 20% of the image (YOLO)",
    "hsv_jitter": "exposure and saturation up to 1.5x in HSV (YOLO)",
    "random_shift": "shift by up to 2 pixels in x and y, border filled with 0 (small digit sets)",
    "affine": "rotation up to 8 degrees, scale 0.9-1.1, horizontal shear up to 10 degrees and a "
    "shift up to 2 pixels, border 0 (LeNet-5-style distortions for small digit sets)",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Source(Strict):
    """Where a number comes from: a seed file, or (for papers outside the seeds, such as a
    dataset's own benchmark) a published document named as one cites it."""

    seed: str = Field(default="", description="seed file name in ../shared/seeds/")
    document: str = Field(
        default="",
        description="a published source outside the seeds, as cited (authors, year, arXiv id; "
        "a dataset's README and where it ships)",
    )
    section: str = Field(description="section, slide or heading the number comes from")

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if bool(self.seed) == bool(self.document):
            raise ValueError("a source names exactly one of `seed` and `document`")
        return self

    @property
    def cited(self) -> str:
        return self.seed or self.document

    @model_serializer(mode="wrap")
    def _origin_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a seed source dumps as before `document` existed (recipes in reports and MLflow)
        return {k: v for k, v in handler(self).items() if v or k == "section"}


class Optimizer(Strict):
    name: Literal["sgd", "adam", "rmsprop"] = "sgd"
    lr: float = Field(gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)


class Schedule(Strict):
    """How the learning rate changes. `step`: multiply by `factor` every `step_epochs`;
    `multistep`: at each of `milestones` (epochs); `plateau`: when validation error stops
    improving for `patience` epochs (AlexNet, VGG, ResNet on ImageNet); `poly`: (1 - t/T)^power;
    `exponential`: multiply by `factor` every `step_epochs` (GoogLeNet: 0.96 every 8 epochs)."""

    name: Literal["constant", "step", "multistep", "plateau", "poly", "cosine", "exponential"]
    factor: float = Field(default=0.1, gt=0)
    step_epochs: float | None = Field(default=None, gt=0)
    milestones: list[float] = Field(default_factory=list)
    patience: int = Field(default=0, ge=0)
    power: float = Field(default=1.0, gt=0)
    warmup_epochs: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _needs(self) -> Schedule:
        if self.name in ("step", "exponential") and self.step_epochs is None:
            raise ValueError(f"a {self.name} schedule needs `step_epochs`")
        if self.name == "multistep" and not self.milestones:
            raise ValueError("a multistep schedule needs `milestones` (epochs)")
        return self


class Evaluation(Strict):
    """The test protocol: resize the shorter side to `resize`, take `crops` crops of `crop`
    (1: centre; 10: the four corners and centre, and their mirror images, scores averaged)."""

    resize: int = Field(gt=0)
    crop: int = Field(gt=0)
    crops: Literal[1, 10] = 1
    metric: Literal["top1_error", "top5_error", "top1_top5", "voc07_map", "voc2010_map", "coco"] = (
        "top1_top5"
    )


class Recipe(Strict):
    name: str = Field(description="unique within the paper; accuracy claims name it in `recipe`")
    model: str = Field(description="a registered model")
    model_kwargs: dict[str, object] = Field(default_factory=dict)
    dataset: str
    train_split: str = "train"
    eval_split: str = "val"
    source: Source
    optimizer: Optimizer
    schedule: Schedule
    batch_size: int = Field(gt=0)
    epochs: float = Field(gt=0)
    dropout: float | None = Field(default=None, ge=0, lt=1)
    input_size: int = Field(gt=0, description="training crop side, pixels")
    resize: int | None = Field(default=None, gt=0, description="shorter side before cropping")
    scale_range: list[int] | None = Field(default=None, description="[min, max] for scale_jitter")
    augmentation: list[str] = Field(default_factory=list)
    evaluation: Evaluation
    needs_gpu: bool = Field(
        default=False,
        description="too costly for a CPU (days on 2 cores): trained only where accuracy.use_gpu "
        "or a budget (accuracy.epochs) is set, not-run with the reason otherwise (cost_reason)",
    )
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        unknown = [a for a in self.augmentation if a not in AUGMENTATIONS]
        if unknown:
            raise ValueError(
                f"unknown augmentation {', '.join(unknown)}; use one of {', '.join(AUGMENTATIONS)}"
            )
        if "scale_jitter" in self.augmentation and (
            not self.scale_range or len(self.scale_range) != 2
        ):
            raise ValueError("scale_jitter needs `scale_range: [min, max]`")
        return self

    @model_serializer(mode="wrap")
    def _flag_when_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # recipes that need no GPU dump as before the flag existed (reports, MLflow, run keys)
        data = handler(self)
        if not self.needs_gpu:
            data.pop("needs_gpu", None)
        return data

    def cost_reason(self, use_gpu: bool, epochs: float | None = None) -> str | None:
        """Why this recipe does not train here: it needs a GPU, the run has none and sets no
        budget of its own (``epochs``, accuracy.epochs); else None."""
        if not self.needs_gpu or use_gpu or epochs is not None:
            return None
        return (
            f"recipe {self.name} ({self.model}, {self.epochs:g} epochs of {self.dataset}) is "
            "too costly for a CPU (its note gives the estimate): set accuracy.use_gpu: true "
            "on a machine with a GPU, or accuracy.epochs to a budget this machine can train"
        )

    def named_choice(self, choices: tuple[str, ...], what: str, example: str) -> str:
        """The one of ``choices`` the recipe's name carries (a protocol option the schema has
        no field for, e.g. DeCAF's logreg / svm); ReproError naming the recipe otherwise."""
        found = [kind for kind in choices if kind in self.name.split("-")]
        if len(found) != 1:
            raise ReproError(
                f"recipe {self.name} names no {what}.",
                f"put exactly one of {', '.join(choices)} in the recipe's name (e.g. {example}).",
            )
        return found[0]
