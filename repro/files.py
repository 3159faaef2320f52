"""Files the harness writes, written atomically: a temporary file in the same folder, flushed
to disk, then renamed over the target. A full disk, a read-only folder or a crash mid-write
leaves an earlier good copy as it was, and the error names the path and says what to do."""

from __future__ import annotations

import csv
import errno
import json
import os
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
