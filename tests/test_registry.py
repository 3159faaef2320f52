"""Every registered model builds and runs a forward pass at its paper's input size."""

from __future__ import annotations

import pytest
import torch

from repro.errors import UnknownModelError
from repro.models import build_model, get_model_spec, list_models

MODELS = list_models()


def test_registry_covers_the_papers() -> None:
    required = {
        "lenet5", "alexnet", "alexnet_single", "zfnet", "vgg_a", "vgg_a_lrn", "vgg_b", "vgg_c",
        "vgg_d", "vgg_e", "googlenet", "inception_v3", "resnet18", "resnet34", "resnet50",
        "resnet101", "resnet152", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
        "densenet121", "densenet169", "densenet201", "densenet264", "resnext50_32x4d",
        "xception", "yolov1", "fast_yolo", "darknet19", "darknet53", "faster_rcnn_vgg16",
        "faster_rcnn_zf", "unet", "inception_v4", "inception_resnet_v1",
        "inception_resnet_v2",
    }  # fmt: skip
    assert required <= set(MODELS), sorted(required - set(MODELS))


@pytest.mark.parametrize("name", MODELS)
def test_builds_and_runs_forward(name: str) -> None:
    spec = get_model_spec(name)
    torch.manual_seed(0)
    model = spec.build().eval()
    example = spec.example_input(1)
    with torch.no_grad():
        out = model(example)
    if spec.task == "detection" and spec.source == "torchvision":
        assert isinstance(out, list) and {"boxes", "labels", "scores"} <= set(out[0])
        return
    outs = out if isinstance(out, (list, tuple)) else [out]
    for o in outs:
        assert isinstance(o, torch.Tensor)
        assert o.shape[0] == 1
        assert torch.isfinite(o).all()
    if spec.task == "classification":
        assert outs[0].dim() == 2


def test_aliases_resolve() -> None:
    assert get_model_spec("vgg16").name == "vgg_d"
    assert get_model_spec("vgg19").name == "vgg_e"


def test_unknown_model_suggests() -> None:
    with pytest.raises(UnknownModelError) as err:
        build_model("resnet5O")
    text = err.value.paragraph()
    assert "unknown model 'resnet5O'" in text and "resnet50" in text and "repro models" in text
