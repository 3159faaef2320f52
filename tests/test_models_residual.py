"""ResNet (v1 and CIFAR), DenseNet-BC, ResNeXt-50 and Xception against their papers' numbers.

Parameter counts, multiply-adds and feature-map shapes are measured on the meta device (no
memory, no arithmetic); real CPU forwards are limited to batch-1 smoke tests.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from repro.models import build_model, get_model_spec
from repro.models.xception import SeparableConv2d

IMAGENET_RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR_RESNETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
DENSENETS = ["densenet121", "densenet169", "densenet201", "densenet264"]
ALL = [*IMAGENET_RESNETS, *CIFAR_RESNETS, *DENSENETS, "resnext50_32x4d", "xception"]


def meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return build_model(name).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(name: str) -> float:
    """Multiply-adds of one forward at the paper's input size (FLOPs / 2)."""
    spec = get_model_spec(name)
    model = meta_model(name)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, *spec.input_size, device="meta"))
    return counter.get_total_flops() / 2


def output_shapes(name: str, paths: list[str]) -> dict[str, tuple[int, ...]]:
    spec = get_model_spec(name)
    model = meta_model(name)
    shapes: dict[str, tuple[int, ...]] = {}
    for path in paths:
        model.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, path=path: shapes.__setitem__(path, tuple(out.shape[1:]))
        )
    with torch.no_grad():
        model(torch.empty(1, *spec.input_size, device="meta"))
    return shapes


@pytest.mark.parametrize(
    ("names", "paper", "input_size", "source"),
    [
        (IMAGENET_RESNETS, "resnet", (3, 224, 224), "own"),
        (CIFAR_RESNETS, "resnet", (3, 32, 32), "own"),
        (DENSENETS, "densenet", (3, 224, 224), "torchvision"),
        (["resnext50_32x4d"], "resnext", (3, 224, 224), "torchvision"),
        (["xception"], "xception", (3, 299, 299), "own"),
    ],
)
def test_registry_entries(names, paper, input_size, source):
    for name in names:
        spec = get_model_spec(name)
        assert (spec.name, spec.paper, spec.input_size, spec.source) == (
            name,
            paper,
            input_size,
            source,
        )


@pytest.mark.parametrize("name", ALL)
def test_forward_on_paper_input(name):
    spec = get_model_spec(name)
    model = spec.build().eval()
    with torch.no_grad():
        out = model(spec.example_input())
    assert out.shape == (1, 10 if name in CIFAR_RESNETS else 1000)
    assert torch.isfinite(out).all()


# He et al. 2015 Table 1, in 10^9 multiply-adds ("FLOPs" in the paper).
@pytest.mark.parametrize(
    ("name", "paper_gmacs"),
    [
        ("resnet18", 1.8),
        ("resnet34", 3.6),
        ("resnet50", 3.8),
        ("resnet101", 7.6),
        ("resnet152", 11.3),
        ("resnext50_32x4d", 4.2),  # Xie et al. 2017 Table 1
    ],
)
def test_multiply_adds_match_paper(name, paper_gmacs):
    assert macs(name) / 1e9 == pytest.approx(paper_gmacs, rel=0.02)


def test_v1_bottleneck_is_cheaper_than_torchvision_v1_5():
    # Stride on the first 1x1 means the 3x3 of a downsampling block runs at the lower resolution.
    with torch.device("meta"):
        tv = torchvision.models.resnet50().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        tv(torch.empty(1, 3, 224, 224, device="meta"))
    assert macs("resnet50") < counter.get_total_flops() / 2 - 0.2e9


@pytest.mark.parametrize(
    ("name", "expected", "rel"),
    [
        # He et al. 2015, CIFAR-10 table: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M.
        ("resnet20", 0.27e6, 0.01),
        ("resnet32", 0.46e6, 0.01),
        ("resnet44", 0.66e6, 0.01),
        ("resnet56", 0.85e6, 0.01),
        ("resnet110", 1.7e6, 0.02),
        # Huang et al. 2017 (approximate figures).
        ("densenet121", 8.0e6, 0.01),
        ("densenet169", 14.1e6, 0.01),
        ("densenet201", 20.0e6, 0.01),
        ("densenet264", 33.3e6, 0.01),
        ("resnext50_32x4d", 25.0e6, 0.01),  # Xie et al. 2017 Table 1
        ("xception", 22_855_952, 0.0),  # Chollet 2017, exact
    ],
)
def test_parameter_counts_match_paper(name, expected, rel):
    assert n_params(meta_model(name)) == pytest.approx(expected, rel=rel)


def test_imagenet_resnet_parameter_counts():
    # Not printed in the paper; pinned to the torchvision-identical layout (same state dicts).
    counts = {name: n_params(meta_model(name)) for name in IMAGENET_RESNETS}
    assert counts == {
        "resnet18": 11_689_512,
        "resnet34": 21_797_672,
        "resnet50": 25_557_032,
        "resnet101": 44_549_160,
        "resnet152": 60_192_808,
    }


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "resnet152"])
def test_v1_stride_on_first_1x1(name):
    model = meta_model(name)
    assert model.layer1[0].conv1.stride == (1, 1)
    for stage in ("layer2", "layer3", "layer4"):
        first = model.get_submodule(f"{stage}.0")
        assert first.conv1.kernel_size == (1, 1) and first.conv1.stride == (2, 2)
        assert first.conv2.kernel_size == (3, 3) and first.conv2.stride == (1, 1)
        assert first.downsample[0].stride == (2, 2)


def test_resnext_stride_on_grouped_3x3():
    block = meta_model("resnext50_32x4d").layer2[0]
    assert block.conv1.stride == (1, 1)
    assert block.conv2.stride == (2, 2) and block.conv2.groups == 32


@pytest.mark.parametrize("name", IMAGENET_RESNETS)
def test_projection_shortcuts_only_where_shape_changes(name):
    model = meta_model(name)
    bottleneck = name not in ("resnet18", "resnet34")
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        blocks = list(model.get_submodule(stage))
        has_projection = stage != "layer1" or bottleneck
        assert (blocks[0].downsample is not None) == has_projection
        assert all(b.downsample is None for b in blocks[1:])


@pytest.mark.parametrize("name", CIFAR_RESNETS)
def test_cifar_option_a_shortcuts_are_parameter_free(name):
    model = meta_model(name)
    n = (int(name.removeprefix("resnet")) - 2) // 6
    shortcuts = [b.downsample for b in model.modules() if getattr(b, "downsample", None)]
    assert len(shortcuts) == 2
    assert all(sum(1 for _ in s.parameters()) == 0 for s in shortcuts)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == 6 * n + 2  # weighted layers: convs plus the fc


def test_cifar_option_a_shortcut_pads_zeros():
    shortcut = build_model("resnet20").layer2[0].downsample
    x = torch.rand(1, 16, 32, 32)
    y = shortcut(x)
    assert y.shape == (1, 32, 16, 16)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert not y[:, 16:].any()


def test_cifar_stage_shapes():
    shapes = output_shapes("resnet56", ["layer1", "layer2", "layer3"])
    assert shapes == {"layer1": (16, 32, 32), "layer2": (32, 16, 16), "layer3": (64, 8, 8)}


@pytest.mark.parametrize(
    ("name", "width"),
    [("resnet18", 64), ("resnet34", 64), ("resnet50", 256), ("resnet152", 256)]
    + [("resnext50_32x4d", 256)],
)
def test_stage_output_shapes(name, width):
    shapes = output_shapes(name, ["layer1", "layer2", "layer3", "layer4"])
    assert shapes == {
        "layer1": (width, 56, 56),
        "layer2": (2 * width, 28, 28),
        "layer3": (4 * width, 14, 14),
        "layer4": (8 * width, 7, 7),
    }


def test_resnet50_loads_torchvision_state_dict():
    ours = build_model("resnet50")
    ours.load_state_dict(torchvision.models.resnet50().state_dict(), strict=True)


def test_resnet18_equals_torchvision_with_its_weights():
    # Basic blocks have only one place for the stride, so v1 and torchvision agree exactly.
    torch.manual_seed(0)
    tv = torchvision.models.resnet18().eval()
    ours = build_model("resnet18").eval()
    ours.load_state_dict(tv.state_dict())
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tv(x))


def test_densenet_block_shapes():
    paths = [f"features.denseblock{i}" for i in range(1, 5)]
    shapes = output_shapes("densenet121", paths)
    # 64 + 6*32 = 256 -> 128, +12*32 = 512 -> 256, +24*32 = 1024 -> 512, +16*32 = 1024
    assert [shapes[p] for p in paths] == [
        (256, 56, 56),
        (512, 28, 28),
        (1024, 14, 14),
        (1024, 7, 7),
    ]


def test_xception_flows():
    paths = ["entry_flow.relu2", "entry_flow", "middle_flow", "exit_flow.block1", "exit_flow"]
    shapes = output_shapes("xception", paths)
    assert shapes == {
        "entry_flow.relu2": (64, 147, 147),
        "entry_flow": (728, 19, 19),
        "middle_flow": (728, 19, 19),
        "exit_flow.block1": (1024, 10, 10),
        "exit_flow": (2048, 10, 10),
    }
    model = meta_model("xception")
    assert len(model.middle_flow) == 8
    assert all(b.shortcut is None for b in model.middle_flow)


def test_separable_conv_is_depthwise_then_pointwise():
    conv = SeparableConv2d(8, 16)
    assert [name for name, _ in conv.named_children()] == ["depthwise", "pointwise"]
    assert conv.depthwise.groups == 8 and conv.depthwise.kernel_size == (3, 3)
    assert conv.pointwise.kernel_size == (1, 1)
    assert n_params(conv) == 8 * 9 + 8 * 16
    assert conv(torch.rand(1, 8, 10, 10)).shape == (1, 16, 10, 10)
