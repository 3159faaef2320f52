"""Published dense peak FLOP/s per precision, for model FLOP utilisation (MFU).

Values are TFLOP/s from NVIDIA's datasheets. The datasheets of Ampere and later quote tensor
throughput "with sparsity"; the dense figure used here is half of it. fp32 is the non-tensor
(CUDA core) peak; "tf32" on a GPU without TF32 tensor cores runs fp32, so its peak is fp32's.
None: the vendor publishes no such peak (no bf16 tensor cores on V100/T4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PeakEntry:
    label: str
    pattern: str  # regex searched in torch.cuda.get_device_name()
    tflops: dict[str, float | None]
    source: str
    missing: str = ""  # why a None peak is None


def _ampere_plus(fp32: float, tf32_sparse: float, half_sparse: float) -> dict[str, float | None]:
    return {"fp32": fp32, "tf32": tf32_sparse / 2, "bf16": half_sparse / 2, "fp16": half_sparse / 2}


NO_BF16 = "the GPU has no bf16 tensor cores and no published bf16 peak"


def _no_bf16(label: str, pattern: str, fp32: float, fp16: float, source: str) -> PeakEntry:
    """Volta and Turing: "tf32" runs fp32 (no TF32 tensor cores), and there is no bf16 peak."""
    tflops: dict[str, float | None] = {"fp32": fp32, "tf32": fp32, "bf16": None, "fp16": fp16}
    return PeakEntry(label, pattern, tflops, source, NO_BF16)


# Order matters: the first matching pattern wins (PCIe/NVL variants before the SXM default).
PEAK_TABLE: tuple[PeakEntry, ...] = (
    # NVIDIA H100 Tensor Core GPU datasheet: SXM 67 / 989* / 1,979*; PCIe 51 / 756* / 1,513*;
    # NVL 60 / 835* / 1,671* (fp32 / tf32 / bf16=fp16 TFLOPS, * with sparsity).
    PeakEntry("H100 PCIe", r"\bH100\b.*PCIe", _ampere_plus(51, 756, 1513), "H100 datasheet"),
    PeakEntry("H100 NVL", r"\bH100\b.*NVL", _ampere_plus(60, 835, 1671), "H100 datasheet"),
    PeakEntry("H100 SXM", r"\bH100\b", _ampere_plus(67, 989, 1979), "H100 datasheet"),
    # NVIDIA H200 Tensor Core GPU datasheet: SXM 67 / 989* / 1,979*; NVL 60 / 835* / 1,671*.
    PeakEntry("H200 NVL", r"\bH200\b.*NVL", _ampere_plus(60, 835, 1671), "H200 datasheet"),
    PeakEntry("H200 SXM", r"\bH200\b", _ampere_plus(67, 989, 1979), "H200 datasheet"),
    # NVIDIA A100 Tensor Core GPU datasheet (40/80 GB, PCIe and SXM): 19.5 / 312* / 624*.
    PeakEntry("A100", r"\bA100\b", _ampere_plus(19.5, 312, 624), "A100 datasheet"),
    # NVIDIA L4 Tensor Core GPU datasheet: 30.3 / 120* / 242*.
    PeakEntry("L4", r"\bL4\b", _ampere_plus(30.3, 120, 242), "L4 datasheet"),
    # The A10G is an AWS-only variant with its own clocks and tensor throughput; NVIDIA publishes
    # no datasheet for it, and the A10's figures (below) do not apply.
    PeakEntry(
        "A10G",
        r"\bA10G\b",
        {"fp32": None, "tf32": None, "bf16": None, "fp16": None},
        "none",
        "NVIDIA publishes no datasheet peak for the AWS A10G (the A10's figures differ)",
    ),
    # NVIDIA A10 Tensor Core GPU datasheet: 31.2 / 125* / 250*.
    PeakEntry("A10", r"\bA10\b", _ampere_plus(31.2, 125, 250), "A10 datasheet"),
    # NVIDIA V100 datasheet: SXM2 15.7 fp32 / 125 tensor (fp16); PCIe 14 / 112; V100S 16.4 / 130.
    _no_bf16("V100S PCIe", r"\bV100S\b", 16.4, 130, "V100 datasheet"),
    _no_bf16("V100 PCIe", r"\bV100\b.*PCI", 14, 112, "V100 datasheet"),
    _no_bf16("V100 SXM2", r"\bV100\b", 15.7, 125, "V100 datasheet"),
    # NVIDIA T4 datasheet: 8.1 fp32, 65 mixed-precision fp16/fp32.
    _no_bf16("T4", r"\bT4\b", 8.1, 65, "T4 datasheet"),
)

NO_PEAK = "no published peak for this device"


def peak_flops(device_type: str, device_name: str, precision: str) -> tuple[float | None, str]:
    """Dense peak FLOP/s of one device at this precision, or None and the reason."""
    if device_type != "cuda":
        return None, f"{NO_PEAK} (cpu run)"
    found = (e for e in PEAK_TABLE if re.search(e.pattern, device_name, flags=re.IGNORECASE))
    entry = next(found, None)
    if entry is None:
        return None, f"{NO_PEAK} ({device_name})"
    tflops = entry.tflops.get(precision)
    if tflops is None:
        return None, f"{NO_PEAK}: {entry.label} {precision}: {entry.missing}"
    return tflops * 1e12, ""


def mfu(achieved_flops_per_s: float | None, peak_flops_per_s: float | None) -> float | None:
    if not achieved_flops_per_s or not peak_flops_per_s:
        return None
    return achieved_flops_per_s / peak_flops_per_s
