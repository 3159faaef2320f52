"""Files the harness writes, written atomically: a temporary file in the same folder, flushed
to disk, then renamed over the target. A full disk, a read-only folder or a crash mid-write
leaves an earlier good copy as it was, and the error names the path and says what to do."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from repro.errors import ReproError


def unwritable(path: Path, exc: OSError) -> ReproError:
    """The ReproError for an OSError met writing ``path``."""
    folder = path.parent
    why = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space on the disk that holds {folder} (or write elsewhere), then rerun"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {folder} writable, or choose another output folder (--out)"
    else:
        fix = f"check that {folder} is a writable folder, then rerun"
    return ReproError(
        f"cannot write {path}: {why}; an earlier copy of {path.name}, if any, is unchanged.",
        f"{fix}.",
    )


def inside(folder: Path | str, name: str) -> Path:
    """``folder / name``, refused when it would lead out of ``folder`` (an absolute name, a
    ``..`` part, a symlink pointing elsewhere): names built from what a file or a store holds
    (a paper's key, a chart's name) must not write anywhere else."""
    base = Path(folder).resolve()
    target = (base / name).resolve()
    if target == base or not target.is_relative_to(base):
        raise ReproError(
            f"refusing to write {name!r}: it leads out of {folder} (to {target}).",
            "a name taken from the input (a paper key, a chart or demonstration name) must be "
            "a plain file name; correct the row or file that gave it.",
        )
    return Path(folder) / name


def atomic_write(path: Path | str, write: Callable[[IO[str]], Any]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise unwritable(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# atomic_write's temporary file: ".<name>.<pid>.tmp"
_TEMPORARY = re.compile(r"\..+\.(\d+)\.tmp")


def remove_leftovers(folder: Path | str) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` when its process was
    killed mid-write (the process is gone; this one writes none while it looks); returns them."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        found = _TEMPORARY.fullmatch(path.name)
        if found and not _running(int(found.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def write_csv(path: Path | str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV table of ``columns`` (other keys ignored, missing ones empty), atomically."""

    def write(fh: IO[str]) -> None:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)

    atomic_write(path, write)


def atomic_write_json(path: Path | str, data: Any, **dump: Any) -> None:
    """``data`` as JSON (``dump``: json.dumps's options), with a final newline."""
    atomic_write(path, lambda fh: fh.write(json.dumps(data, **dump) + "\n"))


def read_text(path: Path | str, error: type[ReproError] = ReproError) -> str:
    """A user's text file as UTF-8; bytes that are not UTF-8 (a damaged or binary file) are an
    ``error`` naming the file and the offset, not a bare UnicodeDecodeError."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}, line {line} (byte {exc.start}): not UTF-8 text ({exc.reason}); the file is "
            "damaged, or is not the text file expected here.",
            f"restore {path.name} from its source, or save it as UTF-8.",
        ) from None


# C0 and C1 controls (ESC starts a terminal's escape codes), the bidirectional overrides that
# reorder what a terminal shows ("Trojan source"), and lone surrogates (a file name's bytes that
# are not UTF-8), which no terminal encoding can print.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: Any) -> str:
    """``text`` from a user's file (a claim's row, a note, a paper title) as safe to print on a
    terminal: control characters shown as escapes (``\\x1b``), never acted on."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))
