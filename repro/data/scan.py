"""The shared part of a verification pass: the file index, the images to decode, the decoding."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from tqdm import tqdm

from repro.data.problems import Problems


class Found(NamedTuple):
    """A dataset's shape as its verifier reads it; `count_paths`: the file listing each split."""

    classes: list[str]
    real_classes: bool  # the real dataset's class list: `expected` holds the published counts
    splits: dict[str, dict[str, int]]
    expected: dict[str, int]
    count_paths: dict[str, str]
    content: dict[str, dict[str, Any]] | None = None  # per split: digest, classes, pixels (IDX)


@dataclass
class Scan:
    """What one pass over a dataset collects: problems, an index of (split, relative path, size
    in bytes) and the images to decode (with the size the annotation gives, when it gives one)."""

    root: Path
    problems: Problems = field(default_factory=Problems)
    index: list[tuple[str, str, int]] = field(default_factory=list)
    to_decode: dict[Path, tuple[int, int] | None] = field(default_factory=dict)
    size_source: dict[Path, str] = field(default_factory=dict)  # where an expected size is from

    def add_file(self, split: str, path: Path) -> bool:
        """Index an existing file of a split; False when it is absent."""
        try:
            size = path.stat().st_size
        except (OSError, ValueError):  # ValueError: a listed name with a NUL byte
            return False
        if not path.is_file():
            return False
        rel = path.relative_to(self.root) if path.is_relative_to(self.root) else path
        self.index.append((split, rel.as_posix(), size))
        return True

    def add_image(
        self,
        split: str,
        path: Path,
        size: tuple[int, int] | None = None,
        listed_in: str | None = None,
    ) -> bool:
        """Index an image and queue it for decoding; a missing-image problem when absent,
        naming the listing (``listed_in``: the file that names the image, else the split)."""
        if not self.add_file(split, path):
            where = f"{listed_in} ({split})" if listed_in else split
            self.problems.add("missing-image", str(path), f"listed in {where}, no such file")
            return False
        self.to_decode.setdefault(path, size)
        if listed_in and size is not None:
            self.size_source.setdefault(path, listed_in)
        return True

    def index_sha256(self) -> str:
        lines = sorted(f"{split}\t{rel}\t{size}\n" for split, rel, size in self.index)
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def decode_all(self, *, progress: bool = True, workers: int | None = None) -> int:
        """Decode every queued image fully (PIL load); corrupt-image problems for those that do
        not decode, bad-annotation for a decoded size other than the annotated one. Pillow
        releases the GIL while decoding, so threads use the cores. Returns images decoded."""
        items = sorted(self.to_decode.items())
        workers = workers or min(8, os.cpu_count() or 1)
        chunk = 512
        bar = tqdm(total=len(items), desc="decode", unit="img", disable=not progress or not items)
        decoded = 0
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                for (path, expected), (size, error) in zip(
                    part, pool.map(decode_image, [p for p, _ in part]), strict=True
                ):
                    if error is not None:
                        self.problems.add("corrupt-image", str(path), error)
                    elif expected is not None and size != expected:
                        self.problems.add(
                            "bad-annotation",
                            str(path),
                            f"decoded size {size[0]}x{size[1]} differs from the annotated "
                            f"{expected[0]}x{expected[1]}"
                            + (f" in {self.size_source[path]}" if path in self.size_source else ""),
                        )
                    else:
                        decoded += 1
                bar.update(len(part))
        bar.close()
        return decoded


def decode_image(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    """((width, height), None) when the file decodes fully, else (None, why)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.size, None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt image
        return None, f"does not decode: {type(exc).__name__}: {exc}"
