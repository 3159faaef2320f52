"""The report as a reader's browser shows it: headless Chromium (Debian's `chromium` package)
lays out reports/index.html, a probe script reads back each chart's rendered size, the console
is captured, and a screenshot is taken and checked for content.

Used by `repro screenshot` and the browser tests (`make browser`)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image  # matplotlib's dependency

from repro.errors import ReproError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "install Debian's chromium package (`sudo apt-get install -y chromium`, or `make chromium`), "
    "or set REPRO_CHROMIUM to a Chromium binary."
)
# Headless, offline and quiet: no first-run UI, no background fetches, no GPU process.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
MAX_HEIGHT = 16000  # px; taller screenshots are cut (Chromium's limit for one bitmap is near)

# Appended to a copy of the page: each chart figure's rendered size and drawn elements, the
# page height and the section ids, written to an attribute that --dump-dom returns.
PROBE = """<script>(function(){
var figs=[].map.call(document.querySelectorAll("figure[id^='chart-']"),function(f){
 var s=f.querySelector("svg"); var r=s?s.getBoundingClientRect():{width:0,height:0};
 return [f.id.slice(6), Math.round(r.width), Math.round(r.height),
         s?s.querySelectorAll("path,use,text,rect").length:0];});
document.documentElement.setAttribute("data-probe", JSON.stringify({figures:figs,
 height:document.documentElement.scrollHeight,
 sections:[].map.call(document.querySelectorAll("h2[id]"),function(h){return h.id;})}));
})();</script>"""


@dataclass
class PageCheck:
    """What Chromium rendered: chart name -> (width px, height px, drawn elements)."""

    figures: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    height: int = 0
    sections: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # console messages: errors, warnings, logs

    def unrendered(self) -> list[str]:
        return [n for n, (w, h, drawn) in self.figures.items() if not (w and h and drawn)]


def find_chromium() -> str | None:
    explicit = os.environ.get("REPRO_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def _chromium(binary: str | None) -> str:
    found = binary or find_chromium()
    if not found:
        raise ReproError("no Chromium found on PATH.", INSTALL_HINT)
    return found


def _run(binary: str, args: list[str], profile: Path, timeout: float) -> Any:
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ReproError(
            f"Chromium did not finish within {timeout:g} s: {' '.join(cmd)}",
            "check that it starts (`chromium --headless --dump-dom about:blank`).",
        ) from exc


CONSOLE_LINE = re.compile(r":CONSOLE(?:\(\d+\)|:\d+)\]\s*(.*)")


def check_page(page: Path, binary: str | None = None, timeout: float = 120) -> PageCheck:
    """Lay out ``page`` in headless Chromium and read back what it rendered."""
    page = Path(page)
    if not page.is_file():
        raise ReproError(f"no report at {page}.", "render it first: `repro report`.")
    binary = _chromium(binary)
    with tempfile.TemporaryDirectory(prefix="repro-browser-") as tmp:
        probed = Path(tmp) / page.name
        text = page.read_text(encoding="utf-8")
        cut = text.rfind("</body>")
        probed.write_text((text[:cut] + PROBE + text[cut:]) if cut >= 0 else text + PROBE)
        done = _run(binary, ["--enable-logging=stderr", "--v=0", "--dump-dom",
                             probed.as_uri()], Path(tmp) / "profile", timeout)  # fmt: skip
    console = [m.group(1) for m in map(CONSOLE_LINE.search, done.stderr.splitlines()) if m]
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    if done.returncode != 0 or not found:
        tail = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise ReproError(
            f"Chromium could not lay out {page} (exit {done.returncode}): {tail}",
            "run the same command by hand to see why; " + INSTALL_HINT,
        )
    probe = json.loads(html.unescape(found.group(1)))
    return PageCheck(
        figures={name: (w, h, n) for name, w, h, n in probe["figures"]},
        height=int(probe["height"]),
        sections=list(probe["sections"]),
        console=console,
    )


def _target(page: Path | str) -> str:
    """A URL as given (a running app, such as the MLflow UI), a file as its file:// URI."""
    text = str(page)
    return text if text.startswith(("http://", "https://")) else Path(page).resolve().as_uri()


def dump_dom(
    url: str, wait_ms: int = 15000, binary: str | None = None, timeout: float = 120
) -> str:
    """The DOM of ``url`` after ``wait_ms`` of (virtual) time: what a script-rendered page
    such as the MLflow UI shows once its requests have answered."""
    binary = _chromium(binary)
    with tempfile.TemporaryDirectory(prefix="repro-browser-") as tmp:
        done = _run(binary, [f"--virtual-time-budget={wait_ms}", "--dump-dom", url],
                    Path(tmp) / "profile", timeout)  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise ReproError(f"Chromium could not render {url}: {tail}", INSTALL_HINT)
    return done.stdout


def screenshot(
    page: Path | str,
    out: Path,
    width: int = 1280,
    height: int = 4000,
    binary: str | None = None,
    timeout: float = 120,
    wait_ms: int = 0,
) -> Path:
    """A PNG of the top ``height`` px of ``page`` (a file or a URL) at ``width`` px (capped at
    MAX_HEIGHT), after ``wait_ms`` of virtual time for pages that render by script."""
    binary = _chromium(binary)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="repro-browser-") as tmp:
        shot = Path(tmp) / "shot.png"
        size = f"--window-size={width},{min(height, MAX_HEIGHT)}"
        wait = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
        done = _run(binary, [size, *wait, f"--screenshot={shot}", _target(page)],
                    Path(tmp) / "profile", timeout)  # fmt: skip
        if not shot.is_file():
            raise ReproError(
                f"Chromium wrote no screenshot of {page} (exit {done.returncode}).",
                "run it by hand to see why; " + INSTALL_HINT,
            )
        shutil.move(shot, out)
    return out


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    ink: float  # fraction of pixels that are not (near) white
    colours: int  # distinct colours after quantising to 4 bits per channel

    @property
    def blank(self) -> bool:
        return self.ink < 0.005 or self.colours < 8


def image_stats(png: Path) -> ImageStats:
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        small = rgb.resize((max(1, rgb.width // 4), max(1, rgb.height // 4)))
        raw = small.tobytes()
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    ink = sum(1 for r, g, b in pixels if min(r, g, b) < 240) / len(pixels)
    colours = len({(r >> 4, g >> 4, b >> 4) for r, g, b in pixels})
    return ImageStats(rgb.width, rgb.height, ink, colours)
