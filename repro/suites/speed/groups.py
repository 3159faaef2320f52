"""Which speed claims can be measured here, and which must be timed together.

A ratio claim links two pipelines; pipelines linked through any claim (of any paper in the run)
form one group, timed in one task, each pipeline once, so that every ratio comes from one run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from repro.claims import Claim
from repro.config import SpeedSettings
from repro.errors import ReproError
from repro.methods.region_proposals import SELECTIVE_SEARCH_PACKAGE, selective_search_available
from repro.suites.speed.timed import DETECTORS, known_pipeline, unknown_pipeline_fix

SELECTIVE_SEARCH = "selective_search"

Pipeline = tuple[str, int]  # (pipeline name, images per forward pass)


def pipeline_key(pipeline: Pipeline) -> str:
    """How a timed pipeline is named in summaries and MLflow metrics."""
    name, batch = pipeline
    return name if batch == 1 else f"{name}_batch{batch}"


def claim_pipelines(claim: Claim) -> list[Pipeline]:
    t = claim.timing
    assert t is not None
    return [(n, t.batch) for n in (t.pipeline, t.relative_to) if n is not None]


def needs_selective_search(claim: Claim) -> bool:
    t = claim.timing
    return bool(t and t.proposals and any(n in DETECTORS for n in (t.pipeline, t.relative_to)))


def check_pipelines(paper_path: str, claims: Iterable[Claim]) -> None:
    """Every pipeline a speed claim names must exist; say which entry names an unknown one."""
    for i, claim in enumerate(claims):
        t = claim.timing
        for name in (t.pipeline, t.relative_to) if t else ():
            if name is not None and not known_pipeline(name):
                raise ReproError(
                    f"{paper_path}, entry claims[{i}] ({claim.id}): unknown speed pipeline "
                    f"{name!r}.",
                    unknown_pipeline_fix(),
                )


def not_run_reason(claim: Claim) -> str | None:
    """Why the speed suite cannot measure this speed claim here, or None if it can."""
    if claim.timing is None:
        if claim.metric.startswith("training"):
            return (
                f"a training-time claim: it needs training runs on {claim.dataset or 'the data'}; "
                "the speed suite times inference only"
            )
        return (
            "no pipeline for this row: the speed suite times only what repro implements "
            "(R-CNN, Fast R-CNN, Faster R-CNN, YOLO and the registered networks)"
        )
    if needs_selective_search(claim) and not selective_search_available():
        return (
            "selective search is not installed (cv2.ximgproc); install "
            f"{SELECTIVE_SEARCH_PACKAGE} to time the claims that include region proposals"
        )
    return None


@dataclass(frozen=True)
class SpeedGroup:
    """Claims timed together, (paper, claim) pairs whose pipelines are linked by ratios, and
    the settings they are timed with."""

    pairs: tuple[tuple[str, Claim], ...]
    settings: SpeedSettings

    @property
    def claims(self) -> list[Claim]:
        return [c for _, c in self.pairs]

    @property
    def pipelines(self) -> list[Pipeline]:
        return sorted({p for c in self.claims for p in claim_pipelines(c)})

    @property
    def selective_search(self) -> bool:
        return any(needs_selective_search(c) for c in self.claims)

    @property
    def key(self) -> str:
        names = [pipeline_key(p) for p in self.pipelines]
        return "speed[" + ", ".join(names + [SELECTIVE_SEARCH] * self.selective_search) + "]"

    @property
    def papers(self) -> list[str]:
        return list(dict.fromkeys(p for p, _ in self.pairs))


def group_claims(items: Iterable[tuple[str, Claim]], settings: SpeedSettings) -> list[SpeedGroup]:
    """Split (paper, claim) pairs into groups of claims that share pipelines (union-find)."""
    parent: dict[Pipeline, Pipeline] = {}

    def find(p: Pipeline) -> Pipeline:
        while parent.setdefault(p, p) != p:
            p = parent[p]
        return p

    items = list(items)
    for _, claim in items:
        first, *rest = claim_pipelines(claim)
        for other in rest:
            parent[find(other)] = find(first)
    groups: dict[Pipeline, list[tuple[str, Claim]]] = {}
    for paper, claim in items:
        groups.setdefault(find(claim_pipelines(claim)[0]), []).append((paper, claim))
    return [SpeedGroup(tuple(pairs), settings) for pairs in groups.values()]
