"""Results survive interruption (issue 27): `repro run` writes each paper as soon as its groups
are in, so Ctrl-C or SIGTERM keeps every finished paper (and a cut paper's finished groups,
marked incomplete, apart); `--resume` measures only what is missing, and reuses a paper only
when it was written in exactly this configuration; `--out` naming a file is an error before
anything is measured."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from repro.cli import main
from repro.report.content import read_measurements
from repro.suites import analytic

REPO = Path(__file__).resolve().parents[1]
# a real signal to a real `repro run` costs a process start (torch, about 5 s on 2 cores) and
# the resumed papers: SIGINT and SIGTERM run in `make test` too, a killed driver in `make faults`
SLOW = pytest.mark.slow
# cheap analytic papers, in the order measured: lenet's one model in well under a second, then
# fcn's VGG-16 for a few seconds (the signal lands there), then cnn_basics
PAPERS = ["lenet", "fcn", "cnn_basics"]
_SRC = "source: {seed: test, section: generated}"
DELTA = f"""
paper: delta
title: A tiny paper with two models
authors: Test
year: 2022
claims:
  - {{id: lenet_params, table: T1, row: lenet, metric: params, unit: K, value: 60,
      kind: analytic, tolerance: exact, {_SRC}, model: lenet5}}
  - {{id: conv_params, table: T1, row: conv, metric: params, unit: count, value: 1,
      kind: analytic, tolerance: exact, {_SRC}, model: conv7x7}}
"""


def _run(papers: Path, out: Path, *extra: str) -> int:
    argv = ["run", "alpha", "beta", "delta", "--papers-dir", str(papers), "--no-ray"]
    return main([*argv, "--no-mlflow", "--out", str(out), *extra])


def _complete(out: Path, paper: str) -> bool:
    """The paper's table and metadata are there, the metadata says complete, and the table is
    the one it was written with."""
    table, meta_path = out / f"{paper}.csv", out / f"{paper}.json"
    if not (table.is_file() and meta_path.is_file()):
        return False
    meta = json.loads(meta_path.read_text())
    digest = hashlib.sha256(table.read_bytes()).hexdigest()
    return meta.get("complete") is True and meta.get("results_sha256") == digest


def _claims(out: Path, paper: str) -> dict[str, tuple[str, str]]:
    with (out / f"{paper}.csv").open() as fh:
        return {r["claim_id"]: (r["verdict"], r["measured"]) for r in csv.DictReader(fh)}


@pytest.fixture()
def papers(tiny_paper_dir: Path) -> Path:
    (tiny_paper_dir / "delta.yaml").write_text(DELTA)
    return tiny_paper_dir


def test_out_naming_a_file_is_an_error_before_measuring(
    papers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    measured: list[str] = []
    monkeypatch.setattr(analytic, "measure_group", lambda *a: measured.append(a[0]))
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me\n")
    for out in (taken, taken / "below"):
        assert _run(papers, out) == 2
        err = capsys.readouterr().err
        assert f"--out {out}" in err and "nothing was measured" in err, err
    assert measured == [] and taken.read_text() == "keep me\n"


def test_a_paper_cut_half_way_keeps_its_finished_groups_apart(
    papers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    out = tmp_path / "m"
    measure = analytic.measure_group

    def cut_at_conv7x7(paper, model, claims):
        if model.key() == "conv7x7":
            raise KeyboardInterrupt
        return measure(paper, model, claims)

    monkeypatch.setattr(analytic, "measure_group", cut_at_conv7x7)
    assert _run(papers, out) == 130
    err = capsys.readouterr().err
    assert "interrupted (SIGINT): kept 2 of 3 paper(s)" in err and "(alpha, beta)" in err, err
    assert "the finished groups of delta" in err and "--resume" in err, err
    assert _complete(out, "alpha") and _complete(out, "beta")
    assert not (out / "delta.csv").exists()
    partial = json.loads((out / "partial" / "delta.json").read_text())
    assert partial["complete"] is False and "not a complete result" in partial["note"]
    assert set(_claims(out / "partial", "delta")) == {"lenet_params"}
    rows = read_measurements(out).rows  # the report never reads the partial copy
    assert {r["paper"] for r in rows} == {"alpha", "beta"}

    monkeypatch.setattr(analytic, "measure_group", measure)
    assert _run(papers, out, "--resume") == 0
    err = capsys.readouterr().err
    assert "alpha reused" in err and "beta reused" in err, err
    assert "delta is measured (not written yet)" in err, err
    assert _complete(out, "delta") and set(_claims(out, "delta")) == {"lenet_params", "conv_params"}
    assert not (out / "partial").exists()


def test_resume_reuses_only_the_same_configuration(
    papers: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert _run(papers, out) == 0
    written = {p: (out / f"{p}.csv").stat().st_mtime_ns for p in ("alpha", "beta", "delta")}
    capsys.readouterr()
    assert _run(papers, out, "--resume") == 0
    captured = capsys.readouterr()
    assert "(reused, --resume)" in captured.out
    assert all(f"{p} reused" in captured.err for p in written), captured.err
    assert written == {p: (out / f"{p}.csv").stat().st_mtime_ns for p in written}

    with (papers / "beta.yaml").open("a") as fh:
        fh.write("# edited\n")
    (out / "alpha.csv").write_text((out / "alpha.csv").read_text().replace("reproduced", "x"))
    assert _run(papers, out, "--resume", "--claims", "params,lenet_params") == 0
    err = capsys.readouterr().err
    assert "reused" not in err, err  # every paper measured again, and why
    assert "alpha is measured (measured with other claims)" in err, err
    assert "beta is measured (measured with other claims, the paper file)" in err, err
    assert _claims(out, "alpha")["params"][0] == "reproduced"  # the edited table replaced
    assert _run(papers, out, "--resume", "--suite", "analytic") == 0
    assert "measured with other suites, claims" in capsys.readouterr().err


def _interrupt(sig: signal.Signals, out: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`repro run PAPERS` in a subprocess, sent ``sig`` once the first paper's file appears;
    returns the process and how long the signal took to end it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "repro.cli", "run", *PAPERS, "--no-ray", "--no-mlflow"]
    proc = subprocess.Popen(
        [*argv, "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = out / f"{PAPERS[0]}.csv"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = time.perf_counter()
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return done, time.perf_counter() - sent


@pytest.mark.parametrize(
    ("sig", "code"),
    [
        pytest.param(signal.SIGINT, 130, id="SIGINT", marks=pytest.mark.faults),
        pytest.param(signal.SIGTERM, 143, id="SIGTERM", marks=pytest.mark.faults),
        pytest.param(signal.SIGKILL, -9, id="SIGKILL", marks=[pytest.mark.faults, SLOW]),
    ],
)
def test_a_signal_keeps_the_finished_papers_and_resume_measures_the_rest(
    sig: signal.Signals, code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    fault_record,
) -> None:  # fmt: skip
    out = tmp_path / "m"
    cut, _ = _interrupt(sig, out)
    kept = [p for p in PAPERS if _complete(out, p)]
    claims_kept = {p: _claims(out, p) for p in kept}
    began = time.perf_counter()
    again = main(["run", *PAPERS, "--no-ray", "--no-mlflow", "--out", str(out), "--resume"])
    recovery = time.perf_counter() - began
    err = capsys.readouterr().err
    measured_twice = [p for p in kept if f"{p} reused" not in err]
    lost = sum(len(c) - len(_claims(out, p).items() & c.items()) for p, c in claims_kept.items())
    what = "driver killed" if sig == signal.SIGKILL else "interrupted"  # a lost driver
    fault_record(
        f"repro run {what} ({sig.name})",
        cut.returncode == code and PAPERS[0] in kept and again == 0 and not measured_twice,
        lost, len(measured_twice), recovery,
    )  # fmt: skip
    assert cut.returncode == code, cut.stderr
    assert "Traceback" not in cut.stderr, cut.stderr
    if sig != signal.SIGKILL:  # a killed process says nothing; its finished papers are kept
        said = f"interrupted ({sig.name}): kept {len(kept)} of 3 paper(s) complete in"
        assert said in cut.stderr, cut.stderr
    assert PAPERS[0] in kept and PAPERS[1] not in kept, (kept, cut.stdout, cut.stderr)
    assert not measured_twice and lost == 0, err
    assert again == 0 and all(_complete(out, p) for p in PAPERS)
    assert all(f"{p} is measured (not written yet)" in err for p in PAPERS if p not in kept), err


@pytest.mark.parametrize("stop", [SystemExit(0), KeyboardInterrupt()], ids=["ray-train", "ctrl-c"])
def test_ctrl_c_on_ray_training_names_the_run_and_how_to_resume(
    stop: BaseException, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """Ray Train meets Ctrl-C with its own handler, which ends the run by SystemExit; either
    way `repro train` says which run stopped, where its checkpoints are, and how to resume."""

    def interrupted(config, launch):
        (tmp_path / "r1" / "checkpoint_0000005").mkdir(parents=True)
        raise stop

    fake = types.SimpleNamespace(run_ray_training=interrupted)
    monkeypatch.setitem(sys.modules, "repro.execution.train", fake)
    argv = ["train", "lenet5", "--workers", "2", "--steps", "3", "--batch-size", "4"]
    assert main([*argv, "--no-mlflow", "--storage", str(tmp_path), "--name", "r1"]) == 130
    err = capsys.readouterr().err
    assert "interrupted (SIGINT): training run r1 stopped" in err, err
    assert f"kept in {tmp_path / 'r1'}/ (latest checkpoint_0000005)" in err, err
    assert "rerun with --name r1" in err, err


def test_sigterm_to_the_shared_ray_wrapper_reaches_its_command(tmp_path: Path) -> None:
    """`python -m repro.execution.shared CMD` passes SIGTERM on to CMD, waits for it to meet
    it, and exits 143 (an address given: no Ray of its own to start)."""
    child = (
        "import signal, sys, time\n"
        "stop = lambda *a: (print('CMD stopped', flush=True), sys.exit(0))\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": "127.0.0.1:1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "repro.execution.shared", sys.executable, "-c", child],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert stdout == "CMD stopped\n" and "Traceback" not in stderr, stderr
