"""One outage policy (issue 25): a tracking store that fails while `repro bench` logs its rows or
`repro report` logs the report is met as `repro run` and training meet it: the work goes on and
is written, the user is warned once, what could not be logged is spooled, and `repro sync`
(spool.replay) logs it once the store answers, exactly once however often it is replayed."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from repro import tracking
from repro.bench.config import BenchConfig
from repro.bench.record import (
    SPOOLED_NOTE,
    BenchLog,
    BenchSession,
    exit_code,
    record_row,
    run_benchmarks,
)
from repro.bench.results import read_rows
from repro.cli import main
from repro.report import log_report
from repro.tracking import client, spool
from repro.tracking.client import EXIT_TRACKING_DEGRADED, SPOOL_ENV
from repro.tracking.report import replay_report


@pytest.fixture
def dead_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An MLflow server URI nothing answers on (a port just closed), with this test's own spool
    and warn-once memory."""
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(client, "_WARNED", set())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "tracking store" in r.getMessage()]


def _runs(uri: str, experiment: str) -> list[Any]:
    store = MlflowClient(tracking_uri=uri)
    exp = store.get_experiment_by_name(experiment)
    return [] if exp is None else store.search_runs([exp.experiment_id])


def _row(model: str) -> dict[str, Any]:
    return {
        "model": model, "mode": "inference", "batch_size": 2, "precision": "fp32",
        "status": "ok", "note": "", "images_per_s": 123.0, "device_type": "cpu",
    }  # fmt: skip


def test_a_bench_whose_store_is_down_writes_its_rows_warns_once_and_sync_logs_them_once(
    dead_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "repro.tracking")
    csv_path = tmp_path / "out" / "bench.csv"
    bench = BenchLog(dead_uri, "bench (2 configurations)")
    series = {"cpu_utilization_percentage": [(0, 50.0, 1000), (1, 60.0, 1100)]}
    record_row(_row("lenet5"), series, csv_path, dead_uri, bench, 1.7e9)
    record_row(_row("alexnet"), {}, csv_path, dead_uri, bench, 1.7e9 + 1)
    bench.close({"configurations": 2, "failed": 0}, False)

    rows = read_rows(csv_path)  # the rows are written, their note saying where the log went
    assert [r["model"] for r in rows] == ["lenet5", "alexnet"]
    assert [(r["note"], float(r["images_per_s"])) for r in rows] == [(SPOOLED_NOTE, 123.0)] * 2
    (warned,) = _warnings(caplog)
    assert dead_uri in warned and "repro sync" in warned
    (path,) = spool.pending()
    entry = json.loads(path.read_text())
    assert entry["call"] == "bench" and entry["uri"] == dead_uri and entry["reason"]
    assert len(entry["rows"]) == 2 and entry["parent"]["closed"]["metrics"]["configurations"] == 2
    assert entry["rows"][0]["row"]["note"] == ""  # the run gets the row as measured

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["sync", "--tracking-uri", store]) == 0
    assert "replayed 1 of 1" in capsys.readouterr().out
    assert spool.pending() == []
    runs = _runs(store, "repro/bench")
    parent = [r for r in runs if r.data.tags.get("repro.role") == tracking.PARENT_ROLE]
    children = [r for r in runs if r not in parent]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert parent[0].data.metrics["configurations"] == 2
    assert sorted(r.data.params["model"] for r in children) == ["alexnet", "lenet5"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent[0].info.run_id}
    assert (
        "system/cpu_utilization_percentage"
        in next(r for r in children if r.data.params["model"] == "lenet5").data.metrics
    )

    assert spool.replay(store).replayed == []  # nothing left: a second sync logs nothing
    tracking.replay_bench(store, entry)  # the same entry again (a sync cut off): still once
    assert len(_runs(store, "repro/bench")) == 3


def test_a_row_cut_off_half_way_is_logged_anew_not_twice(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=store)
    exp = mlflow.create_experiment("repro/bench")
    half = mlflow.create_run(exp, tags={client.ROW_KEY_TAG: "k1"})  # created, nothing more
    entry = {
        "parent": None,
        "rows": [{"key": "k1", "row": _row("vgg"), "series": {}, "started": None}],
    }
    tracking.replay_bench(store, entry)
    tracking.replay_bench(store, entry)
    (run,) = _runs(store, "repro/bench")
    assert run.info.run_id != half.info.run_id and run.data.params["model"] == "vgg"


def _report_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True)
    (folder / "charts").mkdir()
    (folder / "charts" / "a.svg").write_text("<svg/>\n")
    for name in ("results.csv", "README.md", "index.html"):
        (folder / name).write_text(f"{name}\n")
    return {
        "csv": folder / "results.csv",
        "markdown": folder / "README.md",
        "html": folder / "index.html",
        "charts": folder / "charts",
    }


def test_a_report_whose_store_is_down_is_spooled_warned_once_and_synced_once(
    dead_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "repro.tracking")
    paths = _report_files(tmp_path / "reports")
    logged, line = log_report(paths, dead_uri)
    assert not logged and "the report is written" in line and dead_uri in line
    assert all(Path(p).exists() for p in paths.values())
    assert len(_warnings(caplog)) == 1
    (path,) = spool.pending()
    entry = json.loads(path.read_text())
    assert entry["call"] == "report" and entry["uri"] == dead_uri
    assert entry["files"]["html"] == str(paths["html"].resolve())

    logged, _ = log_report(paths, dead_uri)  # the same store down again: no second warning
    assert not logged and len(_warnings(caplog)) == 1 and len(spool.pending()) == 2

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spool.replay(store, only_uri="sqlite:///elsewhere")  # entries of other stores: untouched
    assert len(spool.pending()) == 2
    assert main(["sync", "--tracking-uri", store]) == 0
    assert "2 report(s)" in capsys.readouterr().out
    assert len(_runs(store, "repro/report")) == 2  # one run per report spooled
    replay_report(store, entry)  # the first entry once more: nothing new
    runs = _runs(store, "repro/report")
    assert len(runs) == 2
    artifacts = {
        a.path for a in MlflowClient(tracking_uri=store).list_artifacts(runs[0].info.run_id)
    }
    assert {"results.csv", "README.md", "index.html", "charts"} <= artifacts
    assert spool.replay(store).replayed == []


def test_a_bench_that_spooled_its_log_exits_3_as_repro_run_does(
    dead_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store answered the preflight and went away before the first log: every row is
    measured and written, and the exit status says the MLflow side waits in the spool."""
    monkeypatch.setattr(tracking, "check_tracking_uri", lambda uri: None)
    tiny = {"batch_size": 2, "iters": 1, "repeats": 1, "warmup": 0, "device": "cpu"}
    session = run_benchmarks([BenchConfig("lenet5", **tiny)], tmp_path / "out", dead_uri,
                             echo=lambda _: None)  # fmt: skip
    assert not session.failed and session.spooled is not None and session.spooled.is_file()
    assert exit_code(session) == EXIT_TRACKING_DEGRADED == 3
    (row,) = read_rows(session.recorded[0].path)
    assert row["note"].endswith(SPOOLED_NOTE) and float(row["images_per_s"]) > 0
    assert exit_code(BenchSession(session.recorded)) == 0  # nothing spooled: done
