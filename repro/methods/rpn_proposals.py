"""How many region proposals a trained RPN keeps per image after non-maximum suppression.

Faster R-CNN's "about 2000 proposal regions per image" is the count left by NMS at IoU 0.7 over
all anchors, before any top-N cut. torchvision's RPN caps both sides of its NMS (pre/post NMS
top-N); `count_proposals` lifts both caps for the count and puts them back afterwards, so the
same weights then evaluate as usual. Boxes are clipped to the image and near-empty ones dropped
(torchvision's min_size) before NMS, as in the paper's pipeline.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from repro.errors import DataError, ReproError
from repro.recipes import Recipe

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PROPOSALS_METRIC = "proposals_per_image"
NO_CAP = 10**9


@contextmanager
def uncapped_rpn(model: torch.nn.Module, nms_iou: float) -> Iterator[Any]:
    """``model.rpn`` without its top-N limits and with NMS at ``nms_iou``, restored on exit."""
    rpn = getattr(model, "rpn", None)
    if rpn is None:
        raise ReproError(
            f"{type(model).__name__} has no region proposal network (no `rpn`), so it has no "
            "proposals to count.",
            "count proposals of a Faster R-CNN model (faster_rcnn_vgg16, faster_rcnn_zf).",
        )
    saved = (rpn._pre_nms_top_n, rpn._post_nms_top_n, rpn.nms_thresh)
    rpn._pre_nms_top_n = {"training": NO_CAP, "testing": NO_CAP}
    rpn._post_nms_top_n = {"training": NO_CAP, "testing": NO_CAP}
    rpn.nms_thresh = nms_iou
    try:
        yield rpn
    finally:
        rpn._pre_nms_top_n, rpn._post_nms_top_n, rpn.nms_thresh = saved


def count_proposals(
    model: torch.nn.Module, images: Iterable[torch.Tensor], nms_iou: float = 0.7
) -> list[int]:
    """Per image, the RPN proposals left after NMS at ``nms_iou`` with no top-N limit. The
    images go through the model's own transform (its resize to the training scale)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counts = []
    try:
        with uncapped_rpn(model, nms_iou) as rpn, torch.inference_mode():
            for image in images:
                image_list, _ = model.transform([image.to(device)])
                features = model.backbone(image_list.tensors)
                if isinstance(features, torch.Tensor):
                    features = OrderedDict([("0", features)])
                boxes, _ = rpn(image_list, features)
                counts.append(len(boxes[0]))
    finally:
        model.train(was_training)
    return counts


def measure_proposals(
    recipe: Recipe, root: str, weights: str, *, limit: int | None = None, device: str = "cpu"
) -> dict[str, float]:
    """The mean proposal count of ``weights`` over the recipe's evaluation split (the first
    ``limit`` images when given)."""
    from repro.data.detection_loaders import open_split
    from repro.evaluation.weights import load_weights
    from repro.methods.detection import build_detector

    dataset, classes = open_split(recipe.dataset, root, recipe.eval_split)
    model = build_detector(recipe, len(classes))
    load_weights(model, weights)
    model.to(device)
    count = min(limit or len(dataset), len(dataset))
    skipped: list[str] = []

    def images() -> Iterator[torch.Tensor]:
        for i in range(count):
            try:
                yield dataset[i][0]
            except DataError as exc:  # a corrupt image is counted and logged, not fatal
                skipped.append(exc.cause)
                log.warning("count proposals: skipped %s", exc.cause)

    counts = count_proposals(model, tqdm(images(), total=count, desc="count proposals"))
    if not counts:
        raise ReproError(
            f"the {recipe.eval_split} split of {root} has no readable images to count "
            f"proposals on ({len(skipped)} skipped).",
            "point the dataset root at a split with images (`repro data verify` lists the bad "
            "ones).",
        )
    return {PROPOSALS_METRIC: sum(counts) / len(counts), "proposal_images_skipped": len(skipped)}
