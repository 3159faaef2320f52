"""Paper facts of the classic classification networks: LeNet-5, AlexNet, ZFNet, VGG, GoogLeNet,
Inception-v3. Large models are built on the meta device (shapes and counts without compute)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from repro.models import build_model, get_model_spec
from repro.models.alexnet import krizhevsky_lrn
from repro.models.lenet import C3_TABLE, ScaledTanh

NAMES = [
    "lenet5",
    "alexnet",
    "alexnet_single",
    "zfnet",
    "vgg_a",
    "vgg_a_lrn",
    "vgg_b",
    "vgg_c",
    "vgg_d",
    "vgg_e",
    "googlenet",
    "inception_v3",
]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def n_weights(module: nn.Module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if not n.endswith("bias"))


def output_shapes(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    handles = [
        model.get_submodule(n).register_forward_hook(
            lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:]))
        )
        for n in names
    ]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return shapes


def meta_model(name: str, **kw) -> tuple[nn.Module, torch.Tensor]:
    spec = get_model_spec(name)
    with torch.device("meta"):
        return spec.build(**kw), spec.example_input()


# --- registry ---------------------------------------------------------------------------------


def test_registered_names_and_aliases():
    papers = {"lenet5": "lenet", "alexnet": "alexnet", "zfnet": "zfnet", "vgg_c": "vgg"}
    for name, paper in papers.items():
        assert get_model_spec(name).paper == paper
    for alias, name in {
        "vgg11": "vgg_a",
        "vgg13": "vgg_b",
        "vgg16": "vgg_d",
        "vgg19": "vgg_e",
    }.items():
        assert get_model_spec(alias).name == name
    assert get_model_spec("alexnet").input_size == (3, 227, 227)
    assert get_model_spec("lenet5").input_size == (1, 32, 32)
    assert get_model_spec("inception_v3").input_size == (3, 299, 299)
    assert get_model_spec("inception_v3").source == "torchvision"
    assert get_model_spec("googlenet").source == "own"


@pytest.mark.parametrize("name", NAMES)
def test_forward_on_paper_input(name):
    spec = get_model_spec(name)
    if name.startswith("vgg") or name == "inception_v3":  # big or torchvision's: shapes only
        model, x = meta_model(name)
    else:
        model, x = spec.build().eval(), spec.example_input()
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == (1, 10 if name == "lenet5" else 1000)


# --- LeNet-5 ----------------------------------------------------------------------------------


def test_lenet5_params_and_shapes():
    model = build_model("lenet5")
    assert n_params(model) == 60_000
    per_layer = {n: n_params(m) for n, m in model.named_children()}
    assert per_layer == {
        "C1": 156,
        "S2": 12,
        "C3": 1_516,
        "S4": 32,
        "C5": 48_120,
        "F6": 10_164,
        "output": 0,
    }
    assert sum(len(t) for t in C3_TABLE) == 60
    shapes = output_shapes(model, torch.rand(1, 1, 32, 32), [n for n, _ in model.named_children()])
    assert shapes == {
        "C1": (6, 28, 28),
        "S2": (6, 14, 14),
        "C3": (16, 10, 10),
        "S4": (16, 5, 5),
        "C5": (120, 1, 1),
        "F6": (84,),
        "output": (10,),
    }


def test_lenet5_c3_connection_table():
    c3 = build_model("lenet5").C3[0]
    x = torch.rand(1, 6, 14, 14)
    base = c3(x)
    feeds: dict[int, set[int]] = {j: set() for j in range(16)}
    for i in range(6):
        x2 = x.clone()
        x2[:, i] += 1.0
        changed = (c3(x2) - base).abs().sum(dim=(0, 2, 3)) > 0
        for j in changed.nonzero().flatten().tolist():
            feeds[j].add(i)
    assert feeds == {j: set(t) for j, t in enumerate(C3_TABLE)}
    # Table I, row 0 (S2 map 0) feeds C3 maps 0, 4, 5, 6, 9, 10, 11, 12, 14, 15
    assert [j for j in range(16) if 0 in C3_TABLE[j]] == [0, 4, 5, 6, 9, 10, 11, 12, 14, 15]


def test_lenet5_squashing_and_rbf():
    f = ScaledTanh()
    assert torch.allclose(f(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=1e-4)
    model = build_model("lenet5")
    protos = model.output.prototypes
    assert protos.shape == (10, 84) and set(protos.unique().tolist()) == {-1.0, 1.0}
    assert "output.prototypes" in model.state_dict()
    # an F6 state equal to a class prototype is classified as that class
    assert model.output(protos).argmin(dim=1).tolist() == list(range(10))


# --- AlexNet / ZFNet --------------------------------------------------------------------------

ALEX_LAYERS = ["conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4", "conv5"]
ALEX_LAYERS += ["pool5", "fc6", "fc7", "fc8"]


@pytest.mark.parametrize("name, params", [("alexnet", 60_965_224), ("alexnet_single", 62_378_344)])
def test_alexnet_shapes_and_params(name, params):
    model, x = meta_model(name)
    assert n_params(model) == params
    shapes = output_shapes(model, x, ALEX_LAYERS)
    # the paper normalizes before pooling, the lecture table after
    paper = name == "alexnet"
    norm1, norm2 = ((96, 55, 55), (256, 27, 27)) if paper else ((96, 27, 27), (256, 13, 13))
    assert shapes == {
        "conv1": (96, 55, 55),
        "norm1": norm1,
        "pool1": (96, 27, 27),
        "conv2": (256, 27, 27),
        "norm2": norm2,
        "pool2": (256, 13, 13),
        "conv3": (384, 13, 13),
        "conv4": (384, 13, 13),
        "conv5": (256, 13, 13),
        "pool5": (256, 6, 6),
        "fc6": (4096,),
        "fc7": (4096,),
        "fc8": (1000,),
    }


def test_alexnet_two_towers():
    model, _ = meta_model("alexnet")
    assert model.towers == 2
    convs = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    groups = {n: model.get_submodule(n)[0].groups for n in convs}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    assert tuple(model.conv2[0].weight.shape) == (256, 48, 5, 5)
    assert tuple(model.conv3[0].weight.shape) == (384, 256, 3, 3)
    assert tuple(model.conv4[0].weight.shape) == (384, 192, 3, 3)
    assert model.tower_channels(1, 256) == slice(128, 256)
    single, _ = meta_model("alexnet_single")
    assert single.towers == 1 and single.conv2[0].groups == 1


def _changed_channels(layer: nn.Module, cin: int, hw: int, channel: int) -> torch.Tensor:
    x = torch.rand(1, cin, hw, hw)
    x2 = x.clone()
    x2[:, channel] += 1.0
    with torch.no_grad():
        return ((layer(x2) - layer(x)).abs().sum(dim=(0, 2, 3)) > 0).nonzero().flatten()


def test_alexnet_towers_do_not_communicate():
    model = build_model("alexnet").eval()
    # a change in tower 1's input half reaches only tower 1's outputs in conv2/4/5 and norm1/2
    for name, cin, cout in [("conv2", 96, 256), ("conv4", 384, 384), ("conv5", 384, 256)]:
        changed = _changed_channels(model.get_submodule(name)[0], cin, 13, cin // 2)
        assert changed.min() >= cout // 2, name
    changed = _changed_channels(model.norm1, 96, 5, 48)
    assert changed.tolist() == [48, 49, 50]  # per-tower LRN: channel 47 (tower 0) untouched
    # conv3 is fully connected across towers
    assert len(_changed_channels(model.conv3[0], 256, 13, 200)) == 384


def test_lrn_matches_paper_formula():
    a = torch.rand(1, 7, 3, 3) * 50
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    expected = torch.empty_like(a)
    for i in range(7):
        lo, hi = max(0, i - n // 2), min(6, i + n // 2)
        expected[:, i] = a[:, i] / (k + alpha * a[:, lo : hi + 1].pow(2).sum(1)) ** beta
    assert torch.allclose(krizhevsky_lrn()(a), expected, rtol=1e-5)


def test_zfnet_figure3_sizes():
    model, x = meta_model("zfnet")
    assert n_params(model) == 62_357_608
    shapes = output_shapes(model, x, ALEX_LAYERS)
    assert shapes["conv1"] == (96, 110, 110)
    assert shapes["pool1"] == shapes["norm1"] == (96, 55, 55)
    assert shapes["conv2"] == (256, 26, 26)
    assert shapes["pool2"] == shapes["norm2"] == (256, 13, 13)
    assert shapes["conv3"] == shapes["conv4"] == (384, 13, 13)
    assert shapes["conv5"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)
    assert shapes["fc6"] == shapes["fc7"] == (4096,)
    assert tuple(model.conv1[0].weight.shape) == (96, 3, 7, 7) and model.conv1[0].stride == (2, 2)
    assert model.conv2[0].stride == (2, 2)


# --- VGG --------------------------------------------------------------------------------------

VGG_TABLE2 = {"vgg_a": 133, "vgg_a_lrn": 133, "vgg_b": 133, "vgg_c": 134, "vgg_d": 138}
VGG_TABLE2["vgg_e"] = 144
VGG_DEPTH = {"vgg_a": 11, "vgg_a_lrn": 11, "vgg_b": 13, "vgg_c": 16, "vgg_d": 16, "vgg_e": 19}


@pytest.mark.parametrize("name", list(VGG_TABLE2))
def test_vgg_table1_and_table2(name):
    model, x = meta_model(name)
    assert round(n_params(model) / 1e6) == VGG_TABLE2[name]
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(weighted) == VGG_DEPTH[name]
    one_by_one = [m.out_channels for m in model.features if getattr(m, "kernel_size", 0) == (1, 1)]
    assert one_by_one == ([256, 512, 512] if name == "vgg_c" else [])
    lrn = [i for i, m in enumerate(model.features) if isinstance(m, nn.LocalResponseNorm)]
    assert lrn == ([2] if name == "vgg_a_lrn" else [])
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    shapes = output_shapes(model, x, [f"features.{i}" for i in pools])
    assert list(shapes.values()) == [
        (64, 112, 112),
        (128, 56, 56),
        (256, 28, 28),
        (512, 14, 14),
    ] + [(512, 7, 7)]


@pytest.mark.parametrize("name, tv", [("vgg_a", "vgg11"), ("vgg_b", "vgg13"), ("vgg_e", "vgg19")])
def test_vgg_loads_torchvision_state_dict_meta(name, tv):
    ours, _ = meta_model(name)
    with torch.device("meta"):
        theirs = getattr(torchvision.models, tv)(weights=None)
    ours.load_state_dict(theirs.state_dict())  # strict: same keys, same shapes


def test_vgg16_torchvision_state_dict_and_outputs():
    with torch.device("meta"):
        theirs = torchvision.models.vgg16(weights=None).eval()
        ours = build_model("vgg_d").eval()
    assert set(ours.state_dict()) == set(theirs.state_dict())
    # real tensors for the conv part only (the FC part is 124M parameters): same features
    theirs.features.to_empty(device="cpu")
    for p in theirs.features.parameters():
        nn.init.normal_(p, 0.0, 0.05)
    ours.features.to_empty(device="cpu")
    ours.features.load_state_dict(theirs.features.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours.features(x), theirs.features(x))
    assert str(ours.classifier) == str(theirs.classifier)


# --- GoogLeNet --------------------------------------------------------------------------------

# Table 1 rows: output size (C, H, W), params (K), ops (M). The params column counts weights
# without biases in units of 1024; ops are multiply-accumulates in millions. The conv2 row
# covers conv2_reduce + conv2.
GOOGLENET_TABLE1 = {
    "conv1": ((64, 112, 112), 2.7, 34),
    "pool1": ((64, 56, 56), None, None),
    "conv2": ((192, 56, 56), 112, 360),
    "pool2": ((192, 28, 28), None, None),
    "inception_3a": ((256, 28, 28), 159, 128),
    "inception_3b": ((480, 28, 28), 380, 304),
    "pool3": ((480, 14, 14), None, None),
    "inception_4a": ((512, 14, 14), 364, 73),
    "inception_4b": ((512, 14, 14), 437, 88),
    "inception_4c": ((512, 14, 14), 463, 100),
    "inception_4d": ((528, 14, 14), 580, 119),
    "inception_4e": ((832, 14, 14), 840, 170),
    "pool4": ((832, 7, 7), None, None),
    "inception_5a": ((832, 7, 7), 1072, 54),
    "inception_5b": ((1024, 7, 7), 1388, 71),
    "avgpool": ((1024, 1, 1), None, None),
    "dropout": ((1024, 1, 1), None, None),
    "fc": ((1000,), 1000, 1),
}
# Rows where Table 1 disagrees with its own filter columns (the network follows the columns):
# conv1 7x7x3x64 is 9.2K weights / 118M MACs; 4c's filters give 498K (its 100M ops agree);
# 5a's filters give 1018K and 51M (both 5% under the table, which is consistent with itself).
GOOGLENET_ERRATA = {("conv1", "params"), ("conv1", "ops"), ("inception_4c", "params")}
GOOGLENET_ERRATA |= {("inception_5a", "params"), ("inception_5a", "ops")}


def test_googlenet_table1():
    model, x = meta_model("googlenet")
    model.eval()
    shapes = output_shapes(model, x, list(GOOGLENET_TABLE1))
    with FlopCounterMode(display=False) as counter:
        model(x)
    macs = {
        k.split(".", 1)[1]: sum(v.values()) / 2
        for k, v in counter.get_flop_counts().items()
        if k.count(".") == 1
    }
    macs["conv2"] += macs["conv2_reduce"]
    for row, (shape, params_k, ops_m) in GOOGLENET_TABLE1.items():
        assert shapes[row] == shape, row
        if params_k is None:
            continue
        weights = n_weights(model.get_submodule(row))
        if row == "conv2":
            weights += n_weights(model.conv2_reduce)
        for col, measured, claimed in [("params", weights / 1024, params_k)] + [
            ("ops", macs[row] / 1e6, ops_m)
        ]:
            off = abs(measured / claimed - 1)
            if (row, col) in GOOGLENET_ERRATA:
                assert off > 0.02, (row, col, measured)
            elif row == "fc" and col == "ops":
                assert round(measured) == claimed  # 1.024M printed as "1M"
            else:
                assert off <= 0.02, (row, col, measured, claimed)


def test_googlenet_modules():
    model, x = meta_model("googlenet")
    names = [n for n, _ in model.named_children()]
    assert names[:7] == ["conv1", "pool1", "norm1", "conv2_reduce", "conv2", "norm2", "pool2"]
    assert isinstance(model.norm1, nn.LocalResponseNorm)
    assert isinstance(model.norm2, nn.LocalResponseNorm)
    assert model.dropout.p == 0.4 and model.fc.in_features == 1024
    for name, block in model.named_children():
        if name.startswith("inception_"):
            assert [n for n, _ in block.named_children()] == ["b1x1", "b3x3", "b5x5", "pool_proj"]
            assert block.b5x5.conv.conv.kernel_size == (5, 5), name
            assert block.b3x3.conv.conv.kernel_size == (3, 3), name
            assert block.b5x5.reduce.conv.kernel_size == (1, 1), name
    assert round(n_params(build_model("googlenet", aux_logits=False)) / 1e5) == 70  # 7.0M


def test_googlenet_aux_heads_train_only():
    model = build_model("googlenet")
    x = torch.rand(2, 3, 224, 224)
    model.train()
    out = model(x)
    assert [tuple(t.shape) for t in out] == [(2, 1000)] * 3
    model.eval()
    with torch.no_grad():
        assert isinstance(model(x[:1]), torch.Tensor)


# --- Inception-v3 -----------------------------------------------------------------------------


def test_inception_v3_sizes():
    model, x = meta_model("inception_v3")
    assert model.AuxLogits is None
    shapes = output_shapes(
        model, x, ["Conv2d_1a_3x3", "maxpool1", "maxpool2", "Mixed_5d", "Mixed_6e", "Mixed_7c"]
    )
    assert shapes == {
        "Conv2d_1a_3x3": (32, 149, 149),
        "maxpool1": (64, 73, 73),
        "maxpool2": (192, 35, 35),
        "Mixed_5d": (288, 35, 35),
        "Mixed_6e": (768, 17, 17),
        "Mixed_7c": (2048, 8, 8),
    }
    assert round(n_params(model) / 1e5) == 238  # 23.8M without the aux head
