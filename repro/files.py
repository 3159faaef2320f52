"""Files the harness writes, written atomically: a temporary file in the same folder, flushed
to disk, then renamed over the target. A full disk, a read-only folder or a crash mid-write
leaves an earlier good copy as it was, and the error names the path and says what to do. And
the files users give it, read as untrusted input (text that is not UTF-8, YAML that is not a
regular file, too large, or an alias bomb: named errors)."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from repro.errors import ReproError, yaml_syntax_error


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
    return decode_text(path.read_bytes(), path, error)


def decode_text(data: bytes, path: Path, error: type[ReproError] = ReproError) -> str:
    """``data`` read from ``path`` as UTF-8; an ``error`` naming the file, line and byte where it
    is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}, line {line} (byte {exc.start}): not UTF-8 text ({exc.reason}); the file is "
            "damaged, or is not the text file expected here.",
            f"restore {path.name} from its source, or save it as UTF-8.",
        ) from None


# --- The YAML files users write, read as untrusted input ----------------------------------------
# The YAML files users write (paper files with their recipes, params.yaml) read as untrusted
# input: a regular file of bounded size, and a document whose aliases cannot multiply it (an
# "alias bomb" of a few KB expands to gigabytes), whose keys appear once in each mapping (PyYAML
# keeps the last of two and drops the first without a word) and which does not nest without end.
# Every refusal is an error naming the file, reached before the document is built.

MAX_FILE_BYTES = 1_000_000
# The document with every alias replaced by what it names, counted as one per node plus the
# characters of each scalar: the largest paper file (resnet.yaml, 45 KB) expands to about 42,000.
MAX_EXPANDED_SIZE = 4_000_000
MERGE_TAG = "tag:yaml.org,2002:merge"


def read_user_file(
    path: Path | str, error: type[ReproError] = ReproError, limit: int = MAX_FILE_BYTES
) -> str:
    """The UTF-8 text of ``path``, which must be a regular file of at most ``limit`` bytes: a
    FIFO, device or folder is refused at once (opened without blocking), never read."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(
            f"{path} cannot be read: {exc.strerror or exc}.",
            f"check that {path.name} is a readable file.",
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(
                f"{path} is not a regular file (a FIFO, device, socket or folder); only a file "
                "is read here.",
                f"replace {path.name} with a regular file, or remove it.",
            )
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(
            f"{path} is larger than {limit:,} bytes, the limit for a file read here.",
            f"check that {path.name} is the file meant; split or shorten it.",
        )
    return decode_text(data, path, error)


def load_yaml(
    text: str, path: Path | str, error: type[ReproError] = ReproError
) -> tuple[Any, yaml.Node | None]:
    """The document of ``text`` (``path`` names it in errors) and its composed node tree, once
    the tree is checked: no key twice in one mapping, no alias naming itself, at most
    MAX_EXPANDED_SIZE once the aliases are expanded."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, None
        _expanded_size(node, path, error, {}, set())
        return loader.construct_document(node), node
    except yaml.YAMLError as exc:
        raise yaml_syntax_error(path, text, exc, error) from None
    except RecursionError:
        raise error(
            f"{path} nests its lists and mappings too deeply to be read.",
            f"check that {Path(path).name} is the file meant; a paper or params file nests a "
            "few levels.",
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def _expanded_size(
    node: yaml.Node, path: Path | str, error: type[ReproError], sizes: dict[int, int], open_: set
) -> int:
    """The size of ``node`` with its aliases expanded (each shared node counted once per use,
    measured once); refuses a node that contains itself, a key given twice, and a total past
    MAX_EXPANDED_SIZE."""
    if id(node) in sizes:
        return sizes[id(node)]
    line = node.start_mark.line + 1
    if id(node) in open_:
        raise error(
            f"{path}, line {line}: an alias names the list or mapping it stands in.",
            "replace the alias with the values it should repeat.",
        )
    open_.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        size = 1 + len(node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, path, error, sizes, open_) for item in node.value)
    else:
        seen: dict[tuple[str, str], int] = {}
        size = 1
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG:
                ident = (key.tag, key.value)
                if ident in seen:
                    raise error(
                        f"{path}, line {key.start_mark.line + 1}: key `{key.value:.60}` appears "
                        f"a second time in one mapping (first on line {seen[ident]}); YAML "
                        "would keep only the last.",
                        "remove one of them, or merge their values.",
                    )
                seen[ident] = key.start_mark.line + 1
            size += _expanded_size(key, path, error, sizes, open_)
            size += _expanded_size(value, path, error, sizes, open_)
    open_.discard(id(node))
    if size > MAX_EXPANDED_SIZE:
        raise error(
            f"{path}, line {line}: its aliases expand the document past {MAX_EXPANDED_SIZE:,} "
            "values and characters (an alias bomb, or a file not meant to be read here).",
            "repeat fewer values by alias; a paper file's aliases repeat a recipe or two.",
        )
    sizes[id(node)] = size
    return size


# C0 and C1 controls (ESC starts a terminal's escape codes), the bidirectional overrides that
# reorder what a terminal shows ("Trojan source"), and lone surrogates (a file name's bytes that
# are not UTF-8), which no terminal encoding can print.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def printable(text: Any) -> str:
    """``text`` from a user's file (a claim's row, a note, a paper title) as safe to print on a
    terminal: control characters shown as escapes (``\\x1b``), never acted on."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))
