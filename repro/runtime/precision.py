"""Numeric precision: autocast for bf16/fp16, the TF32 switches for tf32 (the names are in
repro.runtime.vocabulary)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from repro.runtime.vocabulary import PARALLEL, PRECISIONS

__all__ = ["AUTOCAST_DTYPES", "PARALLEL", "PRECISIONS", "autocast", "precision_notes"]
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision_notes(precision: str, device_type: str) -> list[str]:
    """What the user should know about this precision on this device (goes in the row's note)."""
    notes: list[str] = []
    if device_type == "cpu":
        if precision == "tf32":
            notes.append("tf32 has no effect on CPU: matmuls and convolutions ran in fp32")
        elif precision == "bf16" and not torch.cpu._is_avx512_bf16_supported():
            notes.append(
                "this CPU has no native bf16 (AVX512-BF16/AMX): bf16 autocast is emulated and "
                "usually slower than fp32"
            )
        elif precision == "fp16" and not torch.cpu._is_amx_fp16_supported():
            notes.append(
                "this CPU has no native fp16 (AMX-FP16): fp16 autocast is emulated and usually "
                "slower than fp32"
            )
    elif device_type == "cuda" and torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        if precision == "tf32" and major < 8:
            notes.append("tf32 needs compute capability 8.0+: this GPU ran fp32")
        if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            notes.append("this GPU has no native bf16: bf16 is emulated")
    return notes


@contextlib.contextmanager
def tf32_switches(precision: str) -> Iterator[None]:
    """TF32 on for tf32 and explicitly off otherwise (so fp32 means fp32), restoring the
    previous switches afterwards."""
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_matmul
        torch.backends.cudnn.allow_tf32 = old_cudnn


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager[object]:
    """Autocast for bf16/fp16 around the forward pass and loss (backward runs outside it, as
    the autocast docs recommend); a no-op context for fp32 and tf32."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)
