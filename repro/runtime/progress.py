"""Progress of long work: one tqdm bar on a terminal; plain periodic lines otherwise (a CI log,
a DVC stage, `repro run ... > log`), so a run that is not watched still says how far it got."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

LINE_EVERY_S = 30.0  # plain lines: one per interval once work has run that long, and the last
EVERY_ENV = "REPRO_PROGRESS_S"  # overrides the interval; 0 prints a line at every step


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``done`` of ``total`` units (claims), with what is being worked on (a paper) and an ETA.

    ``tty`` None: a bar when ``out`` is a terminal, plain lines when it is not."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "claim",
        out: TextIO | None = None,
        tty: bool | None = None,
        every_s: float | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.out = out if out is not None else sys.stderr
        self.done = 0
        self.current = ""
        if every_s is None:
            every_s = float(os.environ.get(EVERY_ENV) or LINE_EVERY_S)
        self.every_s = every_s
        self._clock = clock
        self._start = clock()
        self._last_line = self._start  # quiet work (shorter than an interval) prints nothing
        self._printed = False
        is_tty = self.out.isatty() if tty is None and hasattr(self.out, "isatty") else bool(tty)
        self._bar = None
        if is_tty:
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.out, dynamic_ncols=True)

    def line(self) -> str:
        elapsed = self._clock() - self._start
        share = self.done / self.total if self.total else 1.0
        eta = _clock(elapsed / share - elapsed) if 0 < share < 1 else "-"
        where = f", {self.current}" if self.current else ""
        return (
            f"{self.desc}: {self.done}/{self.total} {self.unit}s ({share:.0%}){where}, "
            f"{_clock(elapsed)} elapsed, ETA {eta}"
        )

    def start(self, current: str = "") -> None:
        self.current = current
        if self._bar is not None:
            self._bar.set_postfix_str(current)
        elif self.every_s <= 0:
            self._emit()

    def update(self, n: int, current: str = "") -> None:
        self.done = min(self.total, self.done + n)
        self.current = current or self.current
        if self._bar is not None:
            self._bar.set_postfix_str(self.current, refresh=False)
            self._bar.update(n)
            return
        finished = self.done >= self.total and self._printed
        if finished or self._clock() - self._last_line >= self.every_s:
            self._emit()

    def _emit(self) -> None:
        self._last_line = self._clock()
        self._printed = True
        print(self.line(), file=self.out, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._printed and self.done < self.total:
            self._emit()  # stopped early (an error): say where

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
