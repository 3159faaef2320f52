"""The MLflow UI in headless Chromium, served by a real `mlflow server` after `repro run lenet`:
the link the harness prints opens the experiment on its runs table (the reproduction's parent
run), not on the GenAI overview. Marked `browser` (`make browser`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from repro.report import browser
from tests.servers import MlflowServer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        browser.find_chromium() is None, reason="no Chromium: " + browser.INSTALL_HINT
    ),
]
REPO = Path(__file__).resolve().parents[1]


def text_of(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_the_printed_link_opens_the_runs_table(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "server")
    server.start()
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("repro")), "run", "lenet", "--no-ray",
             "--out", str(tmp_path / "m"), "--tracking-uri", server.uri],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        (link,) = re.findall(r"lenet: (http\S+)", done.stdout)
        assert link.startswith(server.uri) and link.endswith("?workflowType=machine_learning")
        page = text_of(browser.dump_dom(link, wait_ms=20000))
        assert "Run Name" in page and re.search(r"\d+ matching runs", page)  # the runs table
        assert re.search(r"lenet \(repro run, [0-9a-f]{12}\)", page)  # the parent run
        assert "Token Usage" not in page and "Traces 0" not in page  # not the GenAI overview
        shot = browser.screenshot(link, tmp_path / "runs.png", 1400, 900, wait_ms=20000)
        assert not browser.image_stats(shot).blank
    finally:
        server.kill()
