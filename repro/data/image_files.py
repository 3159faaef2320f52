"""The image files of a class folder, listed one way for the verifier and for training.

torchvision's ImageFolder walks a class folder with ``os.walk(followlinks=True)`` and keeps
the names ending in one of its IMG_EXTENSIONS. A symlink back to a folder above it (or holding
it) makes that walk list the same images again at every level until the path is too long for
the OS, so training reads many times what a walk without links counts. Here the walk follows
links too, but a folder that resolves to one of its own ancestors (or to a folder holding the
one it is in) is not entered: it is returned as a loop, for the verifier to count and for
training to log.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from repro.errors import DataError

T = TypeVar("T")

# torchvision.datasets.folder.IMG_EXTENSIONS (tests/test_inputs_hostile.py checks they agree):
# the suffixes ImageFolder reads, all of them formats PIL decodes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Images in a row that may fail to decode before the dataset is taken for broken, not spotted.
MAX_UNREADABLE_IN_A_ROW = 16
VERIFY_FIX = (
    "run `repro data verify imagefolder --root ROOT` to list every unreadable image, then "
    "restore or remove them."
)


def is_image_name(name: str) -> bool:
    """An image by its name: a known suffix, not a hidden file (macOS's ``._x.jpg`` forks)."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def class_folders(folder: Path) -> list[str]:
    """The sorted names of the (non-hidden) sub-folders of ``folder``, links to folders too."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass
class ImageWalk:
    """What a walk found: the images in ImageFolder's order (folders sorted, then names), the
    symlink loops not entered (the link, and the folder it leads back to), and image names
    that are not readable files (a dangling link, a folder named x.jpg)."""

    images: list[Path] = field(default_factory=list)
    loops: list[tuple[Path, Path]] = field(default_factory=list)
    not_files: list[Path] = field(default_factory=list)


def walk_images(folder: Path | str) -> ImageWalk:
    """Every image under ``folder`` (see the module docstring)."""
    walk = ImageWalk()
    by_folder: list[tuple[str, list[str]]] = []
    start = Path(folder)
    pending = [(start, frozenset({os.path.realpath(start)}))]
    while pending:
        here, ancestors = pending.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue  # unreadable folder: os.walk's default (ImageFolder's) skips it as well
        names, here_real = [], os.path.realpath(here)
        for entry in entries:
            if entry.is_dir():  # follows links
                real = os.path.realpath(entry.path)
                # back to a folder of this walk, or to one holding it (above the start)
                if real in ancestors or os.path.commonpath([real, here_real]) == real:
                    walk.loops.append((Path(entry.path), Path(real)))
                else:
                    pending.append((Path(entry.path), ancestors | {real}))
            elif is_image_name(entry.name):
                if entry.is_file():
                    names.append(entry.name)
                else:
                    walk.not_files.append(Path(entry.path))
        by_folder.append((str(here), names))
    for path, names in sorted(by_folder):
        walk.images.extend(Path(path) / name for name in names)
    walk.loops.sort()
    return walk


class UnreadableImages(DataError):
    """Too many images in a row do not decode. Raised in a DataLoader worker process, it is
    raised again in the main process by torch with the worker's traceback as its only
    argument: the cause is then the last line of that text."""

    def __init__(self, cause: str, fix: str = VERIFY_FIX) -> None:
        last = cause.rstrip().splitlines()[-1] if cause.strip() else cause
        super().__init__(last.split(f"{UnreadableImages.__name__}: ", 1)[-1], fix)


def first_readable(
    index: int, count: int, load: Callable[[int], T], name: Callable[[int], str]
) -> tuple[T, list[str]]:
    """``load(i)`` of the first item from ``index`` on (cycling over ``count``) that loads, and
    a "name<TAB>why" line for each one before it that did not (a skipped unreadable image);
    UnreadableImages after MAX_UNREADABLE_IN_A_ROW in a row."""
    skipped: list[str] = []
    for offset in range(min(MAX_UNREADABLE_IN_A_ROW, count)):
        i = (index + offset) % count
        try:
            return load(i), skipped
        except Exception as exc:  # noqa: BLE001 - any decoder failure is an unreadable image
            skipped.append(f"{name(i)}\t{type(exc).__name__}: {exc}".replace("\n", " "))
    first = skipped[0].replace("\t", " (", 1) if skipped else "nothing to read"
    raise UnreadableImages(
        f"{len(skipped)} images in a row do not decode, from {first}) on: the dataset looks "
        "broken, not spotted."
    )


def skipped_lines(batch_lines: list[str]) -> list[tuple[str, str]]:
    """(path, why) of the skipped images a batch's samples carry (first_readable's lines, one
    string per sample, joined by newlines)."""
    lines = filter(None, "\n".join(batch_lines).split("\n"))
    return [(path, why) for path, _, why in (line.partition("\t") for line in lines)]
