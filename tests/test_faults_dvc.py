"""Fault: `dvc repro` interrupted mid-stage, by SIGINT (Ctrl-C) and by SIGKILL of its whole
process group. The next `dvc repro` completes, and its results equal an uninterrupted run's."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.clones import dvc, small_clone

pytestmark = [
    pytest.mark.faults,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="git needed for dvc"),
]
PAPERS = ["lenet", "cnn_basics", "alexnet"]


def _claims(work: Path) -> dict[tuple[str, str], tuple[str, str]]:
    with (work / "reports" / "results.csv").open() as fh:
        return {
            (r["paper"], r["claim_id"]): (r["verdict"], r["measured"]) for r in csv.DictReader(fh)
        }


def _interrupt(work: Path, env: dict[str, str], sig: int, stage: str) -> tuple[int, str]:
    """Start `dvc repro`, wait until ``stage`` is running, send ``sig`` to its process group
    (Ctrl-C at a terminal; a crash or an OOM kill of the session). Returns dvc's exit status
    and what it printed."""
    proc = subprocess.Popen(
        [dvc(), "repro"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    seen: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if f"Running stage '{stage}'" in line:
            break
    time.sleep(2.0)  # inside the stage's command
    os.killpg(proc.pid, sig)
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest


@pytest.mark.timeout(1500)
def test_interrupted_dvc_repro_completes_next_time(
    repo: Path, tmp_path: Path, fault_record
) -> None:
    whole = tmp_path / "whole"
    env = small_clone(repo, whole, PAPERS)
    done = subprocess.run([dvc(), "repro"], cwd=whole, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = _claims(whole)

    for sig, stage in ((signal.SIGINT, "measure@cnn_basics"), (signal.SIGKILL, "measure@alexnet")):
        work = tmp_path / f"cut-{sig.name}"
        env = small_clone(repo, work, PAPERS)
        code, printed = _interrupt(work, env, sig, stage)
        assert code != 0, printed  # the interruption took effect
        began = time.perf_counter()
        again = subprocess.run([dvc(), "repro"], cwd=work, env=env, capture_output=True, text=True)
        recovery = time.perf_counter() - began
        got = _claims(work) if again.returncode == 0 else {}
        lost = len(set(expected) - set(got))
        same = got == expected
        fault_record(f"dvc repro interrupted ({sig.name})", again.returncode == 0 and same, lost,
                     0, recovery)  # fmt: skip
        assert again.returncode == 0, printed + again.stdout + again.stderr
        assert same, {k: (v, got.get(k)) for k, v in expected.items() if got.get(k) != v}
        status = subprocess.run([dvc(), "status"], cwd=work, env=env, capture_output=True,
                                text=True)  # fmt: skip
        assert "up to date" in status.stdout, status.stdout
