"""Problems found in a dataset: counted and logged skips instead of a traceback on the first."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from repro.errors import ReproError

log = logging.getLogger("repro.data")

# The kinds the readers and the verifier use (others are allowed; these are documented).
KINDS = (
    "corrupt-image",  # the image file does not decode
    "missing-image",  # an id in a split has no image file
    "missing-annotation",  # an id in a split has no annotation file
    "truncated-annotation",  # an XML/JSON file that does not parse
    "bad-annotation",  # parses but wrong: missing field, xmax <= xmin, bad iscrowd ...
    "box-outside-image",  # a box beyond the image bounds
    "missing-split",  # a split file/folder the dataset should have is absent
    "empty-split",  # a split that lists no images
    "unknown-class",  # an object whose class is not in the class list
    "duplicate-id",  # an image or annotation id listed twice
    "missing-label",  # an image with no label (ImageNet flat layout)
    "count-mismatch",  # split counts differ from the real dataset's published counts
    "corrupt-file",  # a compressed file that does not decompress
    "content-mismatch",  # decoded content differs from the published files' (its digest)
    "symlink-loop",  # a folder link back to a folder above it (not followed)
    "not-jpeg",  # a file named as a JPEG that is not one by its content (decode_jpeg)
)


@dataclass
class Problem:
    kind: str
    path: str
    detail: str


@dataclass
class Problems:
    """Every problem of a pass over a dataset, in the order found."""

    items: list[Problem] = field(default_factory=list)
    max_logged_per_kind: int = 20

    def add(self, kind: str, path: str, detail: str) -> None:
        self.items.append(Problem(kind, str(path), detail))
        seen = sum(1 for p in self.items if p.kind == kind)
        # Only the first few of a kind are logged: a broken dataset can hold thousands.
        if seen <= self.max_logged_per_kind:
            log.warning("%s: %s: %s", kind, path, detail)
        elif seen == self.max_logged_per_kind + 1:
            log.warning("%s: more problems of this kind; see the summary", kind)

    def add_error(self, path: object, exc: ReproError) -> None:
        """A reader's error as a problem: a file that does not parse (an error with a `kind`,
        voc.UnparsableAnnotation) is truncated-annotation, any other bad-annotation."""
        self.add(getattr(exc, "kind", "bad-annotation"), str(path), exc.cause)

    def counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.items))

    def of_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.items if p.kind == kind]

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        # A Problems object is a collector; being empty must not make `if problems:` skip it.
        return True

    def summary(self, first: int = 3) -> str:
        """One line per kind: the count and the first few paths with their detail."""
        lines = []
        for kind, n in self.counts().items():
            examples = [f"{p.path} ({p.detail})" for p in self.of_kind(kind)[:first]]
            more = f"; and {n - first} more" if n > first else ""
            lines.append(f"{kind}: {n} - " + "; ".join(examples) + more)
        return "\n".join(lines)
