"""Fault: a Ray node dies while `repro run --all` has tasks on it (a local two-node cluster;
the worker node's raylet and workers are SIGKILLed while one of them measures). Ray re-runs the
lost tasks on the surviving node: every claim once in the results and once in MLflow, with the
same verdicts and values as a run in one process."""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests.test_cluster import BIN, LocalCluster, two_nodes  # noqa: F401 - the fixture

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def _results(out: Path) -> dict[tuple[str, str], tuple[str, str]]:
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for path in sorted(out.glob("*.csv")):
        with path.open() as fh:
            for r in csv.DictReader(fh):
                assert (r["paper"], r["claim_id"]) not in found, f"{r['claim_id']} twice"
                found[(r["paper"], r["claim_id"])] = (r["verdict"], r["measured"])
    return found


def _logged(uri: str) -> Counter[tuple[str, str]]:
    client = MlflowClient(uri)
    seen: Counter[tuple[str, str]] = Counter()
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], max_results=5000):
            for key in run.data.tags:
                if key.startswith("claim.") and key.endswith(".verdict"):
                    seen[(run.data.tags["paper"], key[len("claim.") : -len(".verdict")])] += 1
    return seen


def _busy_raylet(node_dir: Path) -> tuple[psutil.Process, str] | None:
    """The raylet of the node whose temp dir is ``node_dir`` and the title of its worker,
    once one of its workers is computing a task (a ray::<function> title, on the CPU now)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] != "raylet" or str(node_dir) not in " ".join(proc.info["cmdline"]):
            continue
        for child in proc.children(recursive=True):
            try:
                title = " ".join(child.cmdline())
                if not title.startswith("ray::") or "IDLE" in title:
                    continue
                if child.cpu_percent(interval=0.05) > 50:
                    return proc, title
            except psutil.Error:
                continue
    return None


@pytest.mark.timeout(600)
def test_worker_node_killed_mid_run(
    two_nodes: LocalCluster,  # noqa: F811
    tmp_path: Path,
    fault_record,
) -> None:
    args = ["run", "--all", "--suite", "analytic", "--out"]
    baseline = subprocess.run(
        [str(BIN / "repro"), *args, str(tmp_path / "local"), "--no-ray", "--no-mlflow"],
        env=two_nodes.env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert baseline.returncode == 0, baseline.stderr
    expected = _results(tmp_path / "local")

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = subprocess.Popen(
        [str(BIN / "repro"), *args, str(tmp_path / "cluster"), "--ray-address", two_nodes.gcs,
         "--tracking-uri", uri],
        env=two_nodes.env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    busy = None
    deadline = time.monotonic() + 240
    while busy is None and run.poll() is None and time.monotonic() < deadline:
        busy = _busy_raylet(two_nodes.root / "worker")
    assert busy is not None, "no task ever ran on the worker node"
    raylet, title = busy
    print(f"killing the worker node while its worker runs {title}")
    killed_at = time.perf_counter()
    doomed = [raylet, *raylet.children(recursive=True)]  # the node as a machine going away
    for proc in doomed:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    output, _ = run.communicate(timeout=400)
    recovery = time.perf_counter() - killed_at
    got = _results(tmp_path / "cluster")
    seen = _logged(uri)
    lost = len(set(expected) - set(got)) + len(set(expected) - set(seen))
    dup = sum(n - 1 for n in seen.values() if n > 1)
    same = got == expected
    fault_record("ray worker node killed mid-run", run.returncode == 0 and same and not lost
                 and not dup, lost, dup, recovery)  # fmt: skip
    assert run.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert same, {k: (v, got.get(k)) for k, v in expected.items() if got.get(k) != v}
    assert (lost, dup) == (0, 0)
