"""Networks of the Fashion-MNIST benchmark table (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747;
the table is the dataset's README), built from the code each row links to.

- ``tf_cnn``: the "2 Conv+pooling, Tensorflow's doc, 0.916" row, the TensorFlow layers tutorial's
  network as shipped in the package (/usr/share/doc/dataset-fashion-mnist/benchmark/convnet.py):
  conv 5x5x32 "same" + ReLU, max pool 2x2/2, conv 5x5x64 "same" + ReLU, max pool 2x2/2, dense
  1024 + ReLU, dropout rate 0.4 (training only), dense 10 (logits). 3,274,634 parameters.
- ``vgg_fm``: the "VGG16 26M parameters, 0.935" row, QuantumLiu/fashion-mnist-demo-by-Keras
  (vgg_fm.py): VGG-16's first four conv blocks (3x3 "same" + ReLU; 64, 64 | 128, 128 |
  256 x3 | 512 x3, a 2x2/2 max pool after each block: 28 -> 14 -> 7 -> 3 -> 1), then dense 4096
  + ReLU, dense 4096 + ReLU, dropout 0.5, dense 10. 26,557,642 parameters.

Both take one 28x28 grey channel. Weights start as Keras/TensorFlow's layers did (Glorot-uniform
kernels, zero biases). Flattening is PyTorch's (C, H, W) order where TensorFlow flattens (H, W,
C): a fixed permutation of the first dense layer's inputs, the same network when trained from
scratch.
"""

from __future__ import annotations

from torch import nn

from repro.models.registry import register_model

# The four VGG-16 blocks vgg_fm.py keeps (block 5 and the 224 input are gone: 28 / 2^4 = 1).
VGG_FM_BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512,) * 3)


def glorot_init(model: nn.Module) -> nn.Module:
    """TensorFlow's and Keras' defaults for conv and dense layers: Glorot-uniform kernels, zero
    biases (PyTorch's own default is a scaled Kaiming-uniform)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


@register_model("tf_cnn", paper="fashion_mnist", input_size=(1, 28, 28))
def tf_cnn(num_classes: int = 10, dropout: float = 0.4) -> nn.Module:
    """TensorFlow tutorial CNN of the Fashion-MNIST README (benchmark/convnet.py), 3.27M params.

    ``features``: conv1 (5x5x32, padding 2 = TF "same"), ReLU, pool1, conv2 (5x5x64), ReLU,
    pool2; ``classifier``: flatten (7x7x64 = 3136), dense (1024), ReLU, dropout (TF's
    ``rate=0.4``: the fraction dropped, as PyTorch's p), logits (10).
    """
    features = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, 2),
    )
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(1024, num_classes),
    )
    model = nn.Sequential()
    model.add_module("features", features)
    model.add_module("classifier", classifier)
    return glorot_init(model)


@register_model("vgg_fm", paper="fashion_mnist", input_size=(1, 28, 28))
def vgg_fm(num_classes: int = 10, dropout: float = 0.5) -> nn.Module:
    """VGG-16's first four blocks on 28x28 (the README's "VGG16 26M parameters" row), 26.6M.

    Keras' vgg_fm.py: conv blocks 64-64, 128-128, 256x3, 512x3 (3x3 "same", ReLU, 2x2/2 max
    pool after each), flatten (1x1x512), fc1 4096 + ReLU, fc2 4096 + ReLU, dropout 0.5, dense
    10 (its softmax is in the loss here).
    """
    layers: list[nn.Module] = []
    channels = 1
    for block in VGG_FM_BLOCKS:
        for width in block:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(channels, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, num_classes),
    )
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("classifier", classifier)
    return glorot_init(model)
