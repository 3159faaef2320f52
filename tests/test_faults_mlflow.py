"""Fault: the MLflow tracking server dies during `repro run` (a real `mlflow server`, SIGKILLed).

Each trial runs the same papers against a healthy server and against one that is killed while
the run logs, then compares: every claim in results.csv with the same verdict and value, and
every claim logged to MLflow exactly once (after the replay), whichever moment the kill hit."""

from __future__ import annotations

import csv
import json
import random
import time
from collections import Counter
from pathlib import Path

import mlflow.utils.rest_utils as rest
import pytest
from mlflow.tracking import MlflowClient

from repro import tracking
from repro.cli import main
from repro.tracking import spool
from repro.tracking.client import SPOOL_ENV
from tests.conftest import TINY_ALPHA, TINY_BETA
from tests.servers import MlflowServer

pytestmark = pytest.mark.faults

GAMMA = """
paper: gamma
title: A third tiny paper
authors: Test
year: 2022
claims:
  - {id: params, table: T1, row: net, metric: params, unit: K, value: 60, kind: analytic,
     tolerance: exact, source: {seed: test, section: generated}, model: lenet5}
  - {id: shape, table: T1, row: net, metric: output_shape, unit: shape, value: [6, 28, 28],
     kind: analytic, tolerance: exact, source: {seed: test, section: generated}, model: lenet5,
     layer: C1}
"""
PAPERS = ["alpha", "beta", "gamma"]


@pytest.fixture()
def papers(tiny_paper_dir: Path) -> Path:
    (tiny_paper_dir / "gamma.yaml").write_text(GAMMA)
    return tiny_paper_dir


def _run(papers: Path, out: Path, uri: str) -> int:
    argv = ["run", *PAPERS, "--papers-dir", str(papers), "--no-ray", "--out", str(out)]
    return main([*argv, "--tracking-uri", uri])


def _results(out: Path) -> dict[tuple[str, str], tuple[str, str]]:
    found = {}
    for paper in PAPERS:
        with (out / f"{paper}.csv").open() as fh:
            for r in csv.DictReader(fh):
                found[(r["paper"], r["claim_id"])] = (r["verdict"], r["measured"])
    return found


def _logged(uri: str) -> Counter[tuple[str, str]]:
    """(paper, claim id) of every claim verdict held by an active run of the store."""
    client = MlflowClient(uri)
    seen: Counter[tuple[str, str]] = Counter()
    for exp in client.search_experiments():
        if not exp.name.startswith("repro/"):
            continue
        for run in client.search_runs([exp.experiment_id], max_results=5000):
            for key in run.data.tags:
                if key.startswith("claim.") and key.endswith(".verdict"):
                    seen[(run.data.tags["paper"], key[len("claim.") : -len(".verdict")])] += 1
    return seen


def _compare(expected: set[tuple[str, str]], seen: Counter[tuple[str, str]]) -> tuple[int, int]:
    lost = len(expected - set(seen))
    duplicated = sum(n - 1 for n in seen.values() if n > 1) + len(set(seen) - expected)
    return lost, duplicated


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], tuple[str, str]]:
    """The papers measured and logged with a healthy server, once for the module."""
    root = tmp_path_factory.mktemp("healthy")
    papers = root / "papers"
    papers.mkdir()
    for name, text in (("alpha", TINY_ALPHA), ("beta", TINY_BETA), ("gamma", GAMMA)):
        (papers / f"{name}.yaml").write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SPOOL_ENV, str(root / "spool"))
        server = MlflowServer(root / "server")
        server.start()
        try:
            assert _run(papers, root / "out", server.uri) == 0
            results = _results(root / "out")
            assert _compare(set(results), _logged(server.uri)) == (0, 0)
            assert spool.pending() == []
        finally:
            server.kill()
    return results


def test_server_killed_between_papers_and_back_before_the_run_ends(
    papers: Path, tmp_path: Path, baseline: dict, monkeypatch: pytest.MonkeyPatch, fault_record
) -> None:
    """Killed after the first paper is logged, restarted once the second is spooled: the third
    paper's turn finds it back, replays the second, logs itself; the run exits 0."""
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    server = MlflowServer(tmp_path / "flaky")
    server.start()
    real_log, real_save = tracking.log_paper, spool.save_paper
    calls: list[str] = []
    restarted: list[float] = []

    def log_then_die(uri, paper, *args, **kwargs):
        out = real_log(uri, paper, *args, **kwargs)
        calls.append(paper)
        if len(calls) == 1:
            server.kill()
        return out

    def save_then_restart(*args, **kwargs):
        path = real_save(*args, **kwargs)
        if not restarted:
            server.start()
            restarted.append(time.perf_counter())
        return path

    monkeypatch.setattr(tracking, "log_paper", log_then_die)
    monkeypatch.setattr(spool, "save_paper", save_then_restart)
    try:
        code = _run(papers, tmp_path / "out", server.uri)
        recovery = time.perf_counter() - restarted[0] if restarted else -1.0
        results = _results(tmp_path / "out")
        lost, dup = _compare(set(baseline), _logged(server.uri))
        meta = json.loads((tmp_path / "out" / "beta.json").read_text())
    finally:
        server.kill()
    fault_record("mlflow server killed, back during the run", code == 0 and not lost and not dup,
                 lost, dup, recovery)  # fmt: skip
    assert code == 0
    assert results == baseline
    assert (lost, dup) == (0, 0)
    assert meta["mlflow"]["status"] == "logged after a replay"
    assert spool.pending(tmp_path / "spool") == []


@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 5, 7))])
def test_server_killed_at_a_random_moment_then_synced(
    papers: Path,
    tmp_path: Path,
    baseline: dict,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fault_record,
    seed: int,
) -> None:
    """Killed before a seeded MLflow request (mid-paper included) and not back
    before the run ends: exit 3 with a line that says how to sync, results written; `repro sync`
    after the restart logs what was missing, each claim once."""
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    server = MlflowServer(tmp_path / "down")
    server.start()

    rng = random.Random(seed)
    kill_at = rng.randint(1, 30)  # the request the kill hits (a healthy run makes about 40)
    real_request = rest.http_request
    requests = [0]

    def request_or_die(*args, **kwargs):
        requests[0] += 1
        if requests[0] == kill_at:
            server.kill()
        return real_request(*args, **kwargs)

    monkeypatch.setattr(rest, "http_request", request_or_die)
    try:
        code = _run(papers, tmp_path / "out", server.uri)
        err = capsys.readouterr().err
        results = _results(tmp_path / "out")
        spooled = spool.pending(tmp_path / "spool")
        server.start()
        began = time.perf_counter()
        monkeypatch.setattr(rest, "http_request", real_request)
        sync_code = main(["sync"])
        recovery = time.perf_counter() - began
        lost, dup = _compare(set(baseline), _logged(server.uri))
    finally:
        server.kill()
    survived = results == baseline and not lost and not dup and sync_code == 0
    fault_record("mlflow server killed, never back: repro sync", survived, lost, dup, recovery)
    assert results == baseline
    print(f"seed {seed}: killed at request {kill_at} of {requests[0]}, {len(spooled)} spooled")
    if spooled:  # the kill hit before the last paper was logged
        assert code == 3
        assert "tracking degraded" in err and "repro sync" in err
    assert sync_code == 0
    assert (lost, dup) == (0, 0)
    assert spool.pending(tmp_path / "spool") == []


def test_sync_without_entries_and_with_a_broken_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "spool"
    assert main(["sync", "--spool", str(folder)]) == 0
    assert "nothing to sync" in capsys.readouterr().out
    folder.mkdir()
    (folder / "1-alpha-x.json").write_text("{not json")
    assert main(["sync", "--spool", str(folder)]) == 0  # a counted skip, not a block
    out = capsys.readouterr().out
    assert "1-alpha-x.json" in out and "set aside" in out
    assert (folder / "rejected" / "1-alpha-x.json").exists()


def test_spooled_entry_replays_into_another_store(
    papers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A run whose server went away for good: `repro sync --tracking-uri` sends the spool to a
    store that answers, each claim once, and empties the spool."""
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    server = MlflowServer(tmp_path / "gone")
    server.start()
    monkeypatch.setattr(tracking, "reachable", lambda uri, timeout=3.0: False)
    real_log = tracking.log_paper

    def refuse(uri, *args, **kwargs):
        if uri == server.uri:
            raise ConnectionError("Connection refused")
        return real_log(uri, *args, **kwargs)

    monkeypatch.setattr(tracking, "log_paper", refuse)
    try:
        assert _run(papers, tmp_path / "out", server.uri) == 3
    finally:
        server.kill()
    assert len(spool.pending()) == 3
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["sync", "--tracking-uri", other]) == 0
    assert "replayed 3 of 3" in capsys.readouterr().out
    assert _compare(set(_results(tmp_path / "out")), _logged(other)) == (0, 0)
    assert spool.pending() == []
