"""The Fashion-MNIST benchmark's networks (repro/models/fashion_mnist.py): sizes computed by hand
from the rows' code, shapes layer by layer, and the details the code fixes (padding, dropout,
initialisation)."""

from __future__ import annotations

import torch
from torch import nn

from repro.models import build_model, get_model_spec, list_models


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + c_out


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def test_registered_for_the_fashion_mnist_paper() -> None:
    assert {"tf_cnn", "vgg_fm"} <= set(list_models(paper="fashion_mnist"))
    for name in ("tf_cnn", "vgg_fm"):
        spec = get_model_spec(name)
        assert spec.input_size == (1, 28, 28)
        assert spec.task == "classification" and spec.source == "own"
        assert spec.description


def test_tf_cnn_parameter_count() -> None:
    # convnet.py: conv 5x5 1->32, conv 5x5 32->64, dense 7*7*64 -> 1024, dense 1024 -> 10
    expected = conv(5, 1, 32) + conv(5, 32, 64) + dense(7 * 7 * 64, 1024) + dense(1024, 10)
    assert expected == 832 + 51_264 + 3_212_288 + 10_250 == 3_274_634
    assert n_params(build_model("tf_cnn")) == expected


def test_tf_cnn_shapes_follow_convnet_py() -> None:
    model = build_model("tf_cnn").eval()
    x = torch.rand(3, 1, 28, 28)
    shapes = []
    for layer in model.features:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    # "same" padding keeps 28 and 14; each 2x2/2 pool halves
    assert shapes == [
        (32, 28, 28), (32, 28, 28), (32, 14, 14), (64, 14, 14), (64, 14, 14), (64, 7, 7),
    ]  # fmt: skip
    assert tuple(model.classifier(x).shape) == (3, 10)


def test_tf_cnn_layers_match_convnet_py() -> None:
    model = build_model("tf_cnn")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.padding, c.stride) for c in convs] == [((5, 5), (2, 2), (1, 1))] * 2
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 2
    (drop,) = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drop.p == 0.4  # tf.layers.dropout(rate=0.4): the fraction dropped
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 3  # after conv1, conv2 and the 1024 dense layer; none on the logits
    # TensorFlow's layer defaults: Glorot-uniform kernels, zero biases
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            assert torch.count_nonzero(m.bias) == 0
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert m.weight.abs().max() <= bound
            assert m.weight.abs().max() > 0.9 * bound


def test_tf_cnn_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = build_model("tf_cnn")
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_tf_cnn_num_classes() -> None:
    assert tuple(build_model("tf_cnn", num_classes=3)(torch.rand(1, 1, 28, 28)).shape) == (1, 3)


def test_vgg_fm_parameter_count() -> None:
    # vgg_fm.py: VGG-16's blocks 1-4 (3x3 convs), 28 -> 14 -> 7 -> 3 -> 1, then 512 -> 4096 ->
    # 4096 -> 10
    widths = [1, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512]
    convs = sum(conv(3, a, b) for a, b in zip(widths, widths[1:], strict=False))
    expected = convs + dense(512, 4096) + dense(4096, 4096) + dense(4096, 10)
    assert expected == 26_557_642  # the README's "VGG16 26M parameters"
    with torch.device("meta"):
        model = build_model("vgg_fm")
    assert n_params(model) == expected


def test_vgg_fm_shapes() -> None:
    model = build_model("vgg_fm").eval()
    x = torch.rand(2, 1, 28, 28)
    sizes = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(64, 14, 14), (128, 7, 7), (256, 3, 3), (512, 1, 1)]
    assert tuple(model.classifier(x).shape) == (2, 10)
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.5]  # one dropout, after fc2
