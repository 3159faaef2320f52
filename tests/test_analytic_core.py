"""The analytic measurements on hand-made networks whose numbers are known by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repro.analytic import profile_module
from repro.claims import Claim
from repro.verdicts import judge


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*3*9 + 8 = 224 params, 8*3*9*16*16 MACs
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),  # 5130 params, 5120 MACs
    )


def test_profile_counts() -> None:
    p = profile_module(_net(), torch.rand(1, 3, 16, 16), input_size=[3, 16, 16])
    assert p.params == 224 + 5130
    assert p.weights == 216 + 5120
    assert p.macs == 8 * 27 * 256 + 5120
    assert p.flops == 2 * p.macs
    # input + conv output + pool output + linear output; ReLU and Flatten are not counted
    assert p.activations == 3 * 256 + 8 * 256 + 8 * 64 + 10
    assert p.activation_bytes == 4 * p.activations
    assert p.output_shape == [10]
    assert p.value("output_shape", "2") == [8, 8, 8]
    assert p.value("params", "0") == 224
    assert p.value("macs", "4") == 5120
    assert p.value("activations", "0") == 8 * 256
    with pytest.raises(KeyError):
        p.value("params", "9")


def _claim(**kw: object) -> Claim:
    base = dict(
        table="T",
        row="r",
        metric="params",
        unit="M",
        value=138,
        kind="analytic",
        tolerance={"abs": 0.5},
        source={"seed": "s", "section": "s"},
        model="vgg_d",
    )
    base.update(kw)
    return Claim.model_validate(base)


@pytest.mark.parametrize(
    ("measured", "verdict"), [(138.357, "reproduced"), (137.6, "reproduced"), (138.6, "deviates")]
)
def test_judge_absolute(measured: float, verdict: str) -> None:
    assert judge(_claim(), measured)[0] == verdict


def test_judge_relative_exact_and_shape() -> None:
    rel = _claim(unit="x10^9", value=3.6, tolerance={"rel": 0.02}, metric="macs")
    assert judge(rel, 3.67)[0] == "reproduced"
    assert judge(rel, 3.68)[0] == "deviates"
    exact = _claim(unit="count", value=1728, tolerance="exact", metric="weights")
    assert judge(exact, 1728.0)[0] == "reproduced"
    assert judge(exact, 1729.0)[0] == "deviates"
    shape = _claim(unit="shape", value=[96, 55, 55], tolerance="exact", metric="output_shape")
    assert judge(shape, [96, 55, 55])[0] == "reproduced"
    verdict, note = judge(shape, [96, 54, 54])
    assert verdict == "deviates" and "96x54x54" in note


def test_deviation_note_carries_likely_cause() -> None:
    c = _claim(value=100, note="the table omits the classifier")
    verdict, note = judge(c, 138.4)
    assert verdict == "deviates"
    assert "138.4" in note and "100" in note and "omits the classifier" in note
