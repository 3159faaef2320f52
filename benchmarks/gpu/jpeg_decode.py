"""JPEG decode throughput: torchvision.io.decode_jpeg on the CPU against the same call on CUDA
(nvJPEG), over the same encoded images, in images/s. The images are made here (VOC-sized
500x375 scenes with edges and noise, so the encoder has real work), encoded once at quality 90.

    python benchmarks/gpu/jpeg_decode.py --images 256 --batch 64 --out OUT

Writes OUT/jpeg_decode_<device>_torch<version>.csv, one row per decoder; a decoder that cannot
run here (no CUDA) gets a row with status not-run and the reason.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
import torchvision
from torchvision.io import decode_jpeg, encode_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repro, without installing it

from repro.runtime.device import resolve_device, slugify  # noqa: E402
from repro.runtime.timing import Timing, time_step  # noqa: E402

COLUMNS = ["timestamp", "status", "decoder", "device", "images", "batch", "height", "width",
           "quality", "repeats", "images_per_s", "spread", "torch", "torchvision",
           "note"]  # fmt: skip


def scene(index: int, height: int, width: int) -> torch.Tensor:
    """A uint8 CHW image with gradients, blocks and noise: not trivially compressible."""
    g = torch.Generator().manual_seed(index)
    y = torch.linspace(0, 1, height).view(1, height, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width)
    phase = torch.rand(3, 1, 1, generator=g) * 6.28
    image = 0.5 + 0.35 * torch.sin(8 * x + 5 * y + phase)
    blocks = (torch.rand(3, height // 25 + 1, width // 25 + 1, generator=g) > 0.7).float()
    image = (
        image + 0.2 * blocks.repeat_interleave(25, 1).repeat_interleave(25, 2)[:, :height, :width]
    )
    image = image + 0.08 * torch.randn(3, height, width, generator=g)
    return (image.clamp(0, 1) * 255).to(torch.uint8)


def time_decoder(encoded: list[torch.Tensor], batch: int, device: str, repeats: int) -> Timing:
    """Every image decoded once per timed iteration, ``batch`` per call; one untimed pass first
    (nvJPEG's handles, the first allocations)."""

    def run() -> None:
        for i in range(0, len(encoded), batch):
            decode_jpeg(encoded[i : i + batch], device=device)

    return time_step(run, device=device, warmup=1, iters=1, repeats=repeats,
                     items_per_iter=len(encoded))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch", type=int, default=64, help="images per decode_jpeg call")
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)

    encoded = [encode_jpeg(scene(i, args.height, args.width), quality=args.quality)
               for i in range(args.images)]  # fmt: skip
    device = resolve_device("auto")
    cpu = resolve_device("cpu").description
    gpu = device.description if device.is_cuda else "none (no CUDA device)"
    rows = []
    for decoder, where in (("cpu", "cpu"), ("nvjpeg", "cuda")):
        row = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "decoder": decoder,
               "device": gpu if where == "cuda" else cpu,
               "images": args.images, "batch": args.batch, "height": args.height,
               "width": args.width, "quality": args.quality, "repeats": args.repeats,
               "torch": torch.__version__, "torchvision": torchvision.__version__}  # fmt: skip
        if where == "cuda" and not torch.cuda.is_available():
            row.update(status="not-run", note="no CUDA device: nvJPEG decode needs a GPU")
        else:
            try:
                timing = time_decoder(encoded, args.batch, where, args.repeats)
            except RuntimeError as exc:  # a torchvision build without nvJPEG, a driver error
                row.update(status="error", note=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            else:
                row.update(status="ok", images_per_s=round(timing.items_per_s, 1),
                           spread=round(timing.spread, 4))  # fmt: skip
        rows.append(row)
        print(f"{decoder}: {row.get('images_per_s', row['status'])} images/s {row.get('note', '')}")
    cpu_rate = rows[0].get("images_per_s")
    gpu_rate = rows[1].get("images_per_s")
    if cpu_rate and gpu_rate:
        rows[1]["note"] = f"x{gpu_rate / cpu_rate:.2f} the CPU decoder's rate"
    where, version = slugify(device.type + "-" + device.name), slugify(torch.__version__)
    out = Path(args.out) / f"jpeg_decode_{where}_torch{version}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0 if all(r["status"] in ("ok", "not-run") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
