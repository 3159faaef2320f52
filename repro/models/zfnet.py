"""ZFNet: the ImageNet model of Zeiler & Fergus 2013 (Figure 3).

Module names as AlexNet's: conv1, pool1, norm1, conv2, pool2, norm2, conv3, conv4, conv5, pool5,
fc6, fc7, fc8 (``convN`` = Sequential(Conv2d, ReLU); ``fc6``/``fc7`` = Sequential(Linear, ReLU,
Dropout); ``fc8`` the Linear), registered in execution order. Figure 3's order is
conv -> ReLU -> max pool -> contrast normalization across feature maps.
"""

from __future__ import annotations

from torch import nn

from repro.models.alexnet import LayerByLayer, conv_relu, fc_relu_dropout, krizhevsky_lrn
from repro.models.registry import register_model


class ZFNet(LayerByLayer):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        # Figure 3 sizes need: conv1 pad 1 (224 -> 110), pools in ceil mode (110 -> 55, 26 -> 13)
        # as Caffe pools; conv2 unpadded (55 -> 26).
        self.conv1 = conv_relu(3, 96, 7, stride=2, pad=1)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.norm1 = krizhevsky_lrn()
        self.conv2 = conv_relu(96, 256, 5, stride=2, pad=0)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.norm2 = krizhevsky_lrn()
        self.conv3 = conv_relu(256, 384, 3, stride=1, pad=1)
        self.conv4 = conv_relu(384, 384, 3, stride=1, pad=1)
        self.conv5 = conv_relu(384, 256, 3, stride=1, pad=1)
        self.pool5 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fc6 = fc_relu_dropout(256 * 6 * 6, 4096, dropout)
        self.fc7 = fc_relu_dropout(4096, 4096, dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        # Section 3: weights 1e-2, biases 0 (read as N(0, 0.01) like AlexNet).
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)


@register_model("zfnet", paper="zfnet", input_size=(3, 224, 224))
def zfnet(num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    """ZFNet (Zeiler & Fergus 2013, Fig. 3): 7x7/2 conv1, 5x5/2 conv2, 384-384-256 3x3 convs.

    Output sizes 110 -> 55 -> 26 -> 13 -> 13 -> 6 as in Figure 3; the figure gives no padding,
    and its sizes are not reachable without some: conv1 uses padding 1 and the 3x3/2 max pools
    round up (ceil mode). The paper does not give the normalization constants; AlexNet's LRN
    (k=2, n=5, alpha=1e-4, beta=0.75) is used. Dropout 0.5 in fc6/fc7. About 62.4M params.
    """
    return ZFNet(num_classes=num_classes, dropout=dropout)
