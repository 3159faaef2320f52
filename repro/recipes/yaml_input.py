"""The YAML files users write (paper files with their recipes, params.yaml) read as untrusted
input: a regular file of bounded size, and a document whose aliases cannot multiply it (an
"alias bomb" of a few KB expands to gigabytes), whose keys appear once in each mapping (PyYAML
keeps the last of two and drops the first without a word) and which does not nest without end.
Every refusal is an error naming the file, reached before the document is built.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from repro.errors import ReproError, yaml_syntax_error

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
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}, line {line} (byte {exc.start}): not UTF-8 text ({exc.reason}); the file is "
            "damaged, or is not the text file expected here.",
            f"restore {path.name} from its source, or save it as UTF-8.",
        ) from None


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
