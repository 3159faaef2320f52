"""Progress of `repro run` (repro.runtime.progress): a bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
import re

from repro.claims import load_paper
from repro.cli import main
from repro.config import SpeedSettings
from repro.runner.execute import progress
from repro.runtime.progress import Progress
from repro.suites.speed.groups import SpeedGroup


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_are_periodic_with_paper_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(100, "measuring", out=out, tty=False, every_s=30, clock=clock) as bar:
        bar.start("alexnet")
        for step in range(10):
            clock.now += 10
            bar.update(10, "vgg" if step >= 5 else "alexnet")
    lines = out.getvalue().splitlines()
    # one line per 30 s of the 100 s, and the last
    assert lines[0] == "measuring: 30/100 claims (30%), alexnet, 0:30 elapsed, ETA 1:10"
    assert lines[-1] == "measuring: 100/100 claims (100%), vgg, 1:40 elapsed, ETA -"
    assert len(lines) == 4


def test_work_shorter_than_an_interval_prints_nothing() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(5, "measuring", out=out, tty=False, every_s=30, clock=clock) as bar:
        bar.start("lenet")
        clock.now += 3
        bar.update(5)
    assert out.getvalue() == ""


def test_a_run_stopped_early_says_where() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(10, "measuring", out=out, tty=False, every_s=5, clock=clock) as bar:
        bar.start("resnet")
        clock.now += 6
        bar.update(3)
        clock.now += 1
        bar.update(1)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("measuring: 3/10 claims (30%), resnet")
    assert lines[-1].startswith("measuring: 4/10 claims (40%), resnet, 0:07 elapsed")


def test_a_terminal_gets_one_bar() -> None:
    out = io.StringIO()
    with Progress(4, "measuring", out=out, tty=True) as bar:
        bar.start("lenet")
        bar.update(4, "lenet")
    text = out.getvalue()
    assert "4/4" in text and "lenet" in text and "\r" in text  # redrawn in place
    assert "elapsed, ETA" not in text  # not the plain lines


def test_progress_counts_a_groups_claims_and_names_its_papers() -> None:
    a, b, c = load_paper("alexnet").claims[:3]
    pairs = (("alexnet", a), ("vgg", b), ("alexnet", c))
    assert progress(SpeedGroup(pairs, SpeedSettings())) == (3, "alexnet, vgg")
    assert progress(SpeedGroup((), SpeedSettings())) == (1, "")


def test_repro_run_reports_progress_when_not_a_terminal(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("REPRO_PROGRESS_S", "0")  # a line at every step, however short the run
    out = tmp_path / "m"
    code = main(["run", "lenet", "--no-ray", "--suite", "analytic", "--out", str(out),
                 "--no-mlflow"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    last = [line for line in err.splitlines() if line.startswith("measuring: ")][-1]
    done, total = map(int, re.search(r"(\d+)/(\d+) claims \(100%\)", last).groups())
    assert done == total > 0
