"""The mutators of the seeded fuzz (benchmarks/fuzz.py): each takes a seeded random source and
a valid input's bytes and returns a damaged copy. Generic ones (bytes truncated, flipped,
inserted, deleted; lines dropped, doubled, swapped; tokens swapped for values of the wrong type
or range; random files), and format-aware ones where damage must reach past the first check:
JSON nodes, CSV fields, YAML aliases and nesting, image headers claiming huge sizes, IDX headers
with wrong counts."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import struct
import zlib
from collections.abc import Callable

from PIL import Image

Mutator = Callable[[random.Random, bytes], bytes]


# --- generic mutators --------------------------------------------------------------------------


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 64) :]


def _random_file(rng: random.Random, data: bytes) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 7, len(data) or 1, 4096]))


WEIRD = [
    "", "-1", "0", "1e308", "-1e308", "nan", "inf", "NaN", "null", "~", "true", "[]", "{}",
    "'", '"', "x" * 5000, "\u00e9\u4e2d\U0001f600", "..", "../../etc/passwd", "0x1F", "1_000",
    "99999999999999999999999", "- a", ": b", "&anchor", "*alias", "!!python/object:os.system",
    "<", "&amp;", "]]>", "\t", "\x00", "12.5.3", "-0", "3e-400",
]  # fmt: skip


def _line_edit(rng: random.Random, data: bytes) -> bytes:
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    if not lines:
        return data
    i = rng.randrange(len(lines))
    op = rng.randrange(4)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = " " * rng.randint(0, 6) + lines[i].lstrip()
    return "".join(lines).encode()


def _token(rng: random.Random, data: bytes) -> bytes:
    """Replace one word or number with a value of the wrong type or range."""
    text = data.decode("utf-8", "replace")
    spans = [m.span() for m in re.finditer(r"[A-Za-z0-9_.+-]+", text)]
    if not spans:
        return data
    a, b = rng.choice(spans)
    return (text[:a] + rng.choice(WEIRD) + text[b:]).encode("utf-8", "surrogatepass")


TEXT: list[Mutator] = [_line_edit, _line_edit, _token, _token, _token, _truncate, _flip,
                       _insert, _delete, _random_file]  # fmt: skip
BINARY: list[Mutator] = [_truncate, _flip, _flip, _insert, _delete, _random_file]


def _json_value(rng: random.Random, data: bytes) -> bytes:
    """Parse, pick one node at random, and replace it (or drop it from its container)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return _token(rng, data)
    nodes: list[tuple[object, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                nodes.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node[:20]):
                nodes.append((node, i))
                walk(v)

    walk(doc)
    if not nodes:
        return json.dumps(rng.choice([None, 1, "x", [], {}])).encode()
    parent, key = rng.choice(nodes)
    if rng.random() < 0.25:
        del parent[key]  # type: ignore[index,attr-defined]
    else:
        parent[key] = rng.choice(  # type: ignore[index]
            [None, -1, 0, 1e308, -1e9, "x", "", [], {}, [1, 2], {"a": 1}, True, 10**30,
             [-5, -5, -1, -1], [0, 0, 1e12, 1e12]]
        )  # fmt: skip
    return json.dumps(doc).encode()


JSON: list[Mutator] = [_json_value, _json_value, _json_value, *TEXT]


# --- format-aware mutators --------------------------------------------------------------------


def _png(width: int, height: int, mode: int = 2) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with one tiny compressed row."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _huge_image(rng: random.Random, data: bytes) -> bytes:
    side = rng.choice([0, 1, 65535, 100_000, 2**31 - 1])
    return _png(side, rng.choice([1, side, 70_000]))


def _wrong_mode(rng: random.Random, data: bytes) -> bytes:
    mode = rng.choice(["1", "L", "LA", "P", "I", "I;16", "F", "CMYK", "RGBA", "YCbCr"])
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG", "I": "TIFF", "F": "TIFF", "I;16": "PNG"}.get(
        mode, "PNG"
    )
    size = (rng.randint(1, 40), rng.randint(1, 40))
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return buf.getvalue()


IMAGE: list[Mutator] = [*BINARY, _huge_image, _wrong_mode, _wrong_mode]


def _idx_header(rng: random.Random, data: bytes) -> bytes:
    """An IDX file whose magic, dimension count or sizes disagree with its body."""
    out = bytearray(data)
    if len(out) < 8:
        return _random_file(rng, data)
    field_at = rng.choice([2, 3, 4, 8, 12])
    if field_at < 4:
        out[field_at] = rng.randrange(256)
    elif field_at + 4 <= len(out):
        out[field_at : field_at + 4] = struct.pack(">I", rng.choice([0, 1, 2**31, 2**32 - 1]))
    return bytes(out)


IDX: list[Mutator] = [*BINARY, _idx_header, _idx_header]


# --- CSV and YAML --------------------------------------------------------------------------

HOSTILE_FIELDS = ["x/../../../tmp/PWNED", "nan", "inf", "-inf", "1e999", "-5", "<script>",
                  "\x1b[2J", "a\nb", "unknown-verdict", *WEIRD]  # fmt: skip


def _csv_field(rng: random.Random, data: bytes) -> bytes:
    """Parse, then set one field of one row (the header among them) to a hostile value, or cut
    a row short."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline="")))
    if not rows:
        return _token(rng, data)
    row = rows[rng.randrange(len(rows))]
    if row and rng.random() < 0.2:
        del row[rng.randrange(len(row)) :]
    elif row:
        row[rng.randrange(len(row))] = rng.choice(HOSTILE_FIELDS)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


CSV: list[Mutator] = [_csv_field, _csv_field, _csv_field, *TEXT]


def _yaml_hostile(rng: random.Random, data: bytes) -> bytes:
    """A line of YAML no valid file has, spliced in at a line boundary: an alias bomb, an alias
    that names itself, nesting past any parser's depth, a key given twice."""
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    at = rng.choice([0, len(lines)])  # top level, where a key is expected
    kind = rng.randrange(4)
    if kind == 0:
        bomb = ["b0: &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
        bomb += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]\n" for i in range(1, 9)]
        added = "".join(bomb)
    elif kind == 1:
        added = "loop: &loop [*loop]\n"
    elif kind == 2:
        depth = rng.choice([100, 1000, 5000])
        added = "deep: " + "[" * depth + "]" * depth + "\n"
    else:
        keyed = [line for line in lines if re.match(r"\s*[a-z_]+:", line)]
        added = rng.choice(keyed) if keyed else "x: 1\nx: 2\n"
        at = lines.index(added) + 1 if keyed else at
    return "".join([*lines[:at], added, *lines[at:]]).encode()


YAML: list[Mutator] = [*TEXT, _yaml_hostile, _yaml_hostile]
