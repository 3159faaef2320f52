"""Batch sizes that fit: the --batch-size auto search (double, then bisect) and the retry at half
the batch when a configuration runs out of memory. Both take the step as a function of the
batch, so tests drive them with a fake step that raises OOM above a threshold."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch

from repro.errors import ReproError

T = TypeVar("T")

_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "outofmemory")


class HostMemoryBudgetExceeded(MemoryError):
    """A CPU trial grew the process beyond the memory the search allows itself."""


def is_oom(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, MemoryError, or an allocator RuntimeError saying so (the CPU
    allocator and errors re-raised from Ray workers carry only the message)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, torch.OutOfMemoryError | MemoryError):
            return True
        text = str(e).lower()
        if isinstance(e, RuntimeError) and any(t in text for t in _OOM_TEXT):
            return True
        if "OutOfMemoryError" in type(e).__name__ or "outofmemoryerror" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


@dataclass
class RetryOutcome(Generic[T]):
    value: T
    used: int
    oom_retries: int
    failed: list[int] = field(default_factory=list)  # batches that ran out of memory


def _fitted(step: Callable[[int], T], batch: int) -> tuple[bool, T | None]:
    """(True, ``step(batch)``), or (False, None) with the memory released when it ran out."""
    try:
        return True, step(batch)
    except Exception as exc:
        if not is_oom(exc):
            raise
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return False, None


def run_with_oom_retry(measure: Callable[[int], T], batch: int) -> RetryOutcome[T]:
    """``measure(batch)``; on out-of-memory, again at half the batch until it fits."""
    failed: list[int] = []
    b = batch
    while True:
        ok, value = _fitted(measure, b)
        if ok:
            return RetryOutcome(value, b, len(failed), failed)  # type: ignore[arg-type]
        failed.append(b)
        if b == 1:
            raise ReproError(
                f"out of memory even at batch 1 (tried {', '.join(map(str, failed))}).",
                "use a smaller model or input, lower precision (--precision bf16), or a "
                "device with more memory.",
            )
        b = max(1, b // 2)


@dataclass
class AutoBatch:
    batch: int
    tried: dict[int, bool]  # batch -> fitted
    capped: bool  # the search stopped at the cap, not at a batch that ran out of memory


def find_max_batch(fits_step: Callable[[int], None], start: int = 1, cap: int = 512) -> AutoBatch:
    """The largest batch in [start, cap] for which ``fits_step(batch)`` raises no OOM: double
    from ``start`` until a batch fails or the cap is reached, then bisect the last gap."""
    tried: dict[int, bool] = {}

    def fits(b: int) -> bool:
        tried[b] = _fitted(fits_step, b)[0]
        return tried[b]

    start = max(1, min(start, cap))
    if not fits(start):
        raise ReproError(
            f"out of memory already at batch {start} while searching for the largest batch.",
            "use a smaller model or input, lower precision, or a device with more memory.",
        )
    good, bad = start, None
    while good < cap:
        b = min(good * 2, cap)
        if fits(b):
            good = b
        else:
            bad = b
            break
    if bad is None:
        return AutoBatch(good, tried, capped=True)
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return AutoBatch(good, tried, capped=False)
