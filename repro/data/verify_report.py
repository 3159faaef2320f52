"""A dataset's verification: its splits, classes, problems and statistics, and its manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro import __version__
from repro.data.problems import Problems
from repro.files import atomic_write_text


@dataclass
class VerifyReport:
    name: str
    root: Path
    splits: dict[str, dict[str, int]]  # split -> images, objects, classes (+ difficult, crowd)
    classes: list[str]
    problems: Problems
    stats: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)  # published counts, when compared
    real_classes: bool = False  # the real dataset's class list (counts are compared then)
    decoded: int = 0  # images decoded without error (0 with decode=False)
    index_sha256: str = ""
    index_files: int = 0
    # per split of an MNIST-format set: content sha256 (and the published one), per-class
    # counts, pixel mean and std (repro.data.mnist)
    content: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return len(self.problems) == 0

    def manifest(self) -> dict[str, Any]:
        content: dict[str, Any] = {}
        if self.content:
            content = {
                "content": self.content,
                "content_format": "sha256 of the decoded images (N x 28 x 28 bytes, row-major) "
                "then the labels (N bytes); pixel mean and std of pixel/255",
            }
        return {
            "name": self.name,
            "root": str(self.root),
            "splits": self.splits,
            "expected": self.expected,
            "num_classes": len(self.classes),
            "real_classes": self.real_classes,
            "decoded_images": self.decoded,
            "problems": self.problems.counts(),
            "index_sha256": self.index_sha256,
            "index_files": self.index_files,
            "index_format": "sha256 of sorted lines 'split<TAB>relative path<TAB>size in bytes'",
            "repro_version": __version__,
            **content,
        }

    def write_manifest(self, path: Path | str) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(self.manifest(), indent=2, sort_keys=True) + "\n")
        return path
