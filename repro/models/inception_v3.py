"""Inception-v3 (Szegedy et al., "Rethinking the Inception Architecture", 2016), via torchvision.

Module names are torchvision's (the TF-slim reference names): Conv2d_1a_3x3, Conv2d_2a_3x3,
Conv2d_2b_3x3, maxpool1, Conv2d_3b_1x1, Conv2d_4a_3x3, maxpool2, Mixed_5b/5c/5d (35x35),
Mixed_6a (35 -> 17 grid reduction), Mixed_6b/6c/6d/6e (17x17), AuxLogits, Mixed_7a (17 -> 8
grid reduction), Mixed_7b/7c (8x8), avgpool, dropout, fc.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import inception_v3 as tv_inception_v3

from repro.models.registry import register_model


@register_model("inception_v3", paper="inception", input_size=(3, 299, 299), source="torchvision")
def inception_v3(
    num_classes: int = 1000, aux_logits: bool = False, dropout: float = 0.5
) -> nn.Module:
    """Inception-v3 as torchvision builds it (the layout of the authors' released TF model).

    Why torchvision: it reproduces the reference implementation that produced the paper's
    Inception-v3 numbers, which is more exact than the paper's Table 1. How far it follows
    Table 1 (299x299x3 input):
    - Stem: same first part (3x3/2 conv 32 -> 149, 3x3 conv 32 -> 147, padded 3x3 conv 64,
      3x3/2 max pool -> 73x73x64). Table 1 then lists 3x3 conv 80 (-> 71), 3x3/2 conv 192
      (-> 35) and 3x3 conv to 35x35x288; the reference uses a 1x1 conv 80 (73x73), a 3x3 conv
      192 (71x71) and a 3x3/2 max pool, giving 35x35x192 into the first module.
    - 35x35: three modules (256, 288, 288 channels out) with a 1x1 -> 5x5 branch beside the
      double-3x3 branch, not Figure 5's fully factorized form.
    - 17x17: Table 1's "5x Inception" is the 35->17 reduction (Mixed_6a) plus four Figure 6
      modules with 1x7/7x1 factorization (n = 7), all 17x17x768, as the table's sizes say.
    - 8x8: a 17->8 reduction (Mixed_7a) plus two Figure 7 modules, 8x8x1280 in and 8x8x2048
      out, 8x8 average pool, dropout, linear 2048 -> 1000: as Table 1.
    - Every conv is followed by batch norm (the "BN-auxiliary" v3 also normalizes the aux
      head's FC); the aux head sits on the 17x17 output (Mixed_6e). It is off by default
      (``aux_logits=False``) so forward returns logits in train and eval mode.
    ~23.8M parameters without the aux head (~27.2M with it); ~5.7 G multiply-adds.
    """
    return tv_inception_v3(
        weights=None,
        num_classes=num_classes,
        aux_logits=aux_logits,
        init_weights=False,
        dropout=dropout,
    )
