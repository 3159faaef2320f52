"""Classification: top-k counts, the test transforms, 10-crop softmax averaging, OOM retry and
skipped unreadable images."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn

from repro.errors import ReproError
from repro.evaluation.classification import (
    classification_errors,
    eval_transform,
    evaluate_classifier,
    topk_correct,
)


def test_topk_correct_on_hand_made_logits() -> None:
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.3, 0.2, 0.4],  # target 1: top-1
            [0.8, 0.1, 0.7, 0.6, 0.5, 0.4],  # target 4: rank 4 -> top-5 only
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # target 0: rank 6 -> neither
        ]
    )
    targets = torch.tensor([1, 4, 0])
    assert topk_correct(logits, targets) == {1: 1, 5: 2}
    assert topk_correct(logits, targets, ks=(1, 2, 6)) == {1: 1, 2: 1, 6: 3}
    assert topk_correct(logits[:, :3], torch.tensor([1, 2, 0]), ks=(5,)) == {5: 3}  # k > classes
    errors = classification_errors({1: 1, 5: 2}, 3)
    assert errors["top1_error"] == pytest.approx(200 / 3)
    assert errors["top5_error"] == pytest.approx(100 / 3)
    assert math.isnan(classification_errors({1: 0}, 0)["top1_error"])


def test_eval_transform_shapes_crops_and_normalization() -> None:
    torch.manual_seed(0)
    pixels = (torch.rand(256, 256, 3) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    one = eval_transform(256, 224, crops=1)(image)
    assert one.shape == (3, 224, 224)
    ten = eval_transform(256, 224, crops=10)(image)
    assert ten.shape == (10, 3, 224, 224)
    assert torch.equal(ten[4], one)  # the fifth crop is the centre crop
    assert torch.equal(ten[5], ten[1].flip(-1))  # mirrored image's top-left = top-right flipped
    assert torch.equal(ten[9], ten[4].flip(-1))
    mean_colour = Image.new("RGB", (300, 400), (124, 116, 104))  # ImageNet mean * 255
    assert eval_transform(256, 224)(mean_colour).abs().max() < 0.01
    wide = Image.new("RGB", (400, 300))
    assert eval_transform(256, 224)(wide).shape == (3, 224, 224)
    assert eval_transform(36, 32, channels=1)(wide).shape == (1, 32, 32)
    assert eval_transform(200, 224)(wide).shape == (3, 224, 224)  # padded around 266x200
    with pytest.raises(ReproError, match="larger"):
        eval_transform(200, 224, crops=10)


class CropLookup(nn.Module):
    """Logits looked up by the constant value an input is filled with."""

    def __init__(self, table: list[list[float]], fail_above: int | None = None) -> None:
        super().__init__()
        self.table = torch.tensor(table)
        self.fail_above = fail_above
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        if self.fail_above is not None and x.shape[0] > self.fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.table[x.flatten(1).mean(1).round().long()]


class Filled:
    """Items (tensor filled with per-crop values, target); OSError for the `broken` indices."""

    def __init__(self, values: list[list[int]], targets: list[int], broken=()) -> None:
        self.values, self.targets, self.broken = values, targets, set(broken)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int):
        if i in self.broken:
            raise OSError(f"image file is truncated (item {i})")
        crops = torch.stack([torch.full((3, 4, 4), float(v)) for v in self.values[i]])
        return (crops if len(crops) > 1 else crops[0]), self.targets[i]


def test_ten_crop_averages_the_softmax() -> None:
    # crops 0-5 say class 1 mildly (and class 0 very unlikely), crops 6-9 say class 0 strongly:
    # mean softmax -> class 0; mean logits, majority vote and the first crop -> class 1
    table = [[-100.0, 0.1, 0.0], [10.0, 0.0, 0.0]]
    crops = [[0] * 6 + [1] * 4]
    model = CropLookup(table)
    result = evaluate_classifier(model, Filled(crops, [0]), crops=10, progress=False)
    assert result["top1_error"] == 0.0 and result["crops"] == 10 and result["images"] == 1
    probs = torch.softmax(torch.tensor([table[0]] * 6 + [table[1]] * 4), 1).mean(0)
    assert int(probs.argmax()) == 0
    assert int(torch.tensor([table[0]] * 6 + [table[1]] * 4).mean(0).argmax()) == 1
    result = evaluate_classifier(model, Filled(crops, [1]), crops=10, progress=False)
    assert result["top1_error"] == 100.0 and result["top5_error"] == 0.0


def test_one_crop_needs_one_crop_inputs() -> None:
    model = CropLookup([[1.0, 0.0], [0.0, 1.0]])
    data = Filled([[0], [1], [1], [0]], [0, 1, 0, 0])
    result = evaluate_classifier(model, data, crops=1, batch_size=3, progress=False)
    assert result["top1_error"] == 25.0 and result["images"] == 4
    with pytest.raises(ReproError, match="crops=10"):
        evaluate_classifier(model, data, crops=10, progress=False)


def test_out_of_memory_retries_at_half_batch() -> None:
    table = [[1.0, 0.0], [0.0, 1.0]]
    data = Filled([[i % 2] for i in range(10)], [0] * 10)
    reference = evaluate_classifier(CropLookup(table), data, batch_size=8, progress=False)
    model = CropLookup(table, fail_above=2)
    result = evaluate_classifier(model, data, batch_size=8, progress=False)
    assert result["top1_error"] == reference["top1_error"] == 50.0
    assert result["oom_retries"] == 2 and result["batch_size_used"] == 2
    assert max(n for n in model.batch_sizes[3:]) <= 2  # the smaller size is kept
    with pytest.raises(ReproError, match="even for one image"):
        evaluate_classifier(CropLookup(table, fail_above=0), data, batch_size=4, progress=False)


def test_unreadable_images_are_counted_skips() -> None:
    model = CropLookup([[1.0, 0.0], [0.0, 1.0]])
    data = Filled([[0]] * 6, [0] * 6, broken={2, 4})
    result = evaluate_classifier(model, data, batch_size=4, progress=False)
    assert result["images"] == 4 and result["skipped"] == 2
    assert result["top1_error"] == 0.0
    assert result["skipped_items"][0].startswith("2: OSError")
    all_broken = Filled([[0]] * 2, [0] * 2, broken={0, 1})
    result = evaluate_classifier(model, all_broken, progress=False)
    assert result["images"] == 0 and result["skipped"] == 2 and math.isnan(result["top1_error"])


def test_a_centre_crop_beyond_the_image_pads_it_and_tencrop_refuses() -> None:
    """LeNet-5's protocol: a 28x28 image centred in its 32x32 field (zeros around), as the
    training's centre crop feeds it; TenCrop's corners cannot pad, so it names the fix."""
    image = torch.ones(1, 28, 28)
    padded = eval_transform(28, 32, 1, channels=1, normalize=False)(image)
    assert padded.shape == (1, 32, 32) and padded.sum() == 28 * 28
    assert padded[0, 2:30, 2:30].min() == 1 and padded[0, :2].max() == 0
    with pytest.raises(ReproError, match="TenCrop cannot pad") as err:
        eval_transform(28, 32, 10, channels=1)
    assert "--crops 1" in err.value.fix
