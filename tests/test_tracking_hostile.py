"""The tracking store used as a hostile world would (issue 27): two first runs against one new
sqlite file, a store left half-migrated, many writers, a server that answers /health but hangs
on its API, malformed spool entries. Each ends in the records kept once, a named error or a
counted skip, within a stated bound."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from mlflow.store.db import utils as db
from mlflow.tracking import MlflowClient

from repro import tracking
from repro.cli import main
from repro.tracking import client, spool, store
from repro.tracking.client import SPOOL_ENV, log_batch, log_run, save_entry

REPO = Path(__file__).resolve().parents[1]
HEAD = db._get_latest_schema_revision()


def _uri(path: Path) -> str:
    return f"sqlite:///{path}"


def _keys(uri: str, experiment: str = "concurrent") -> Counter[str]:
    """How many runs of repro/<experiment> carry each row key."""
    mlflow = MlflowClient(uri)
    exp = mlflow.get_experiment_by_name(f"repro/{experiment}")
    runs = [] if exp is None else mlflow.search_runs([exp.experiment_id], max_results=5000)
    return Counter(r.data.tags.get(client.ROW_KEY_TAG) for r in runs)


def _log(uri: str, key: str) -> None:
    log_run(uri, "concurrent", key, None, lambda c, rid: log_batch(c, rid, {"key": key}), key=key)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store at MLflow's schema head, made once: each test copies it (creating one takes
    seconds)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    store.prepare(_uri(path))
    return path


@pytest.fixture()
def fresh(template: Path, tmp_path: Path) -> str:
    path = tmp_path / "mlflow.db"
    shutil.copy(template, path)
    return _uri(path)


def _sql(uri: str, *statements: str) -> None:
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as conn:
        for statement in statements:
            conn.execute(statement)


def _half_migrate(uri: str) -> str:
    """Leave the store as a migration cut off mid-table leaves it: the revision before head,
    alembic's copy of the table it was altering. Returns that revision."""
    scripts = ScriptDirectory.from_config(db._get_alembic_config(""))
    before = scripts.get_revision(HEAD).down_revision
    _sql(
        uri,
        f"UPDATE alembic_version SET version_num = '{before}'",
        "CREATE TABLE _alembic_tmp_metrics AS SELECT * FROM metrics",
    )
    return str(before)


# --- Concurrent first runs -----------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
import mlflow.tracking  # loaded before the start, so the writers race on the store itself
from repro.tracking.client import log_batch, log_run
uri, who, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
(go.parent / f"ready-{who}").touch()
while not go.exists():
    time.sleep(0.01)
for i in range(3):
    key = f"{who}-{i}"
    log_run(uri, "concurrent", key, None, lambda c, rid: log_batch(c, rid, {"k": key}), key=key)
"""


def _first_runs(folder: Path) -> tuple[list[int], Counter[str], float]:
    """Two processes that log 3 runs each into one new sqlite store, started together."""
    folder.mkdir()
    uri, go = _uri(folder / "mlflow.db"), folder / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, uri, who, str(go)], env=env, cwd=folder,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for who in ("a", "b")
    ]  # fmt: skip
    deadline = time.time() + 120
    while not all((folder / f"ready-{who}").exists() for who in "ab") and time.time() < deadline:
        time.sleep(0.05)
    began = time.perf_counter()
    go.touch()
    codes = [p.wait(timeout=300) for p in procs]
    seconds = time.perf_counter() - began
    for p in procs:
        out = p.stdout.read().decode() if p.stdout else ""
        assert "Traceback" not in out, out[-2000:]
    return codes, _keys(uri), seconds


@pytest.mark.faults
def test_two_first_runs_against_one_new_sqlite_store_both_log_everything_once(
    tmp_path: Path, fault_record
) -> None:
    """Without the lock both died in MLflow's migration (table _alembic_tmp_... already exists)
    and the store stayed broken. Two processes each needing ~10 s here: two trials."""
    expected = {f"{who}-{i}" for who in "ab" for i in range(3)}
    for trial in range(2):
        codes, seen, seconds = _first_runs(tmp_path / f"trial{trial}")
        lost = len(expected - set(seen))
        duplicated = sum(n - 1 for n in seen.values() if n > 1)
        survived = codes == [0, 0] and not lost and not duplicated
        fault_record("two first runs against one new sqlite store", survived, lost, duplicated,
                     seconds)  # fmt: skip
        assert codes == [0, 0]
        assert set(seen) == expected and (lost, duplicated) == (0, 0)


def test_creating_a_new_store_is_serialised_by_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads preparing one new store: MLflow's table creation runs once at a time (the
    file lock), and the store ends at the schema head."""
    real, inside, most = db._initialize_tables, [0], [0]

    def slow_initialize(engine):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.5)  # the window two unlocked creations overlap in
        try:
            real(engine)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(db, "_initialize_tables", slow_initialize)
    uri = _uri(tmp_path / "mlflow.db")
    start, errors = threading.Barrier(2), []

    def prepare() -> None:
        start.wait()
        try:
            store.prepare(uri)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and most[0] == 1
    _log(uri, "after")
    assert _keys(uri) == Counter({"after": 1})


# --- A store left half-migrated ------------------------------------------------------------


def _revision(uri: str) -> str:
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def _tables(uri: str) -> set[str]:
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_half_migrated_store_without_runs_is_moved_aside_and_created_anew(
    fresh: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = _half_migrate(fresh)
    tracking.check_tracking_uri(fresh)
    path = Path(fresh.removeprefix("sqlite:///"))
    aside = list(path.parent.glob("mlflow.db.half-migrated-*"))
    assert len(aside) == 1 and _revision(_uri(aside[0])) == before  # kept as it was
    assert _revision(fresh) == HEAD and "_alembic_tmp_metrics" not in _tables(fresh)
    assert any("half-migrated" in r.getMessage() for r in caplog.records)
    _log(fresh, "after")
    assert _keys(fresh) == Counter({"after": 1})


def test_a_leftover_copy_beside_its_table_is_dropped_and_the_runs_kept(
    fresh: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _log(fresh, "kept")
    _sql(fresh, "CREATE TABLE _alembic_tmp_latest_metrics AS SELECT * FROM latest_metrics")
    monkeypatch.setattr(store, "_READY", set())  # as a later process finds it
    tracking.check_tracking_uri(fresh)
    assert "_alembic_tmp_latest_metrics" not in _tables(fresh)
    _log(fresh, "after")
    assert _keys(fresh) == Counter({"kept": 1, "after": 1})


def test_a_half_migrated_store_holding_runs_is_named_with_the_fix(
    fresh: str, tiny_paper_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _log(fresh, "kept")
    before = _half_migrate(fresh)
    monkeypatch.setattr(store, "_READY", set())
    argv = ["run", "alpha", "--papers-dir", str(tiny_paper_dir), "--no-ray"]
    code = main([*argv, "--out", str(tmp_path / "out"), "--tracking-uri", fresh])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"schema revision {before}" in err and "_alembic_tmp_metrics" in err
    assert "Fix:" in err and "mlflow db upgrade" in err
    assert _revision(fresh) == before and _keys(fresh) == Counter({"kept": 1})  # untouched


def test_a_file_that_is_not_a_database_is_named_before_measuring(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.db"
    path.write_bytes(b"not sqlite at all" * 300)
    with pytest.raises(store.StoreError, match="cannot be read as a sqlite database") as caught:
        tracking.check_tracking_uri(_uri(path))
    assert "move it aside" in caught.value.fix and path.read_bytes().startswith(b"not sqlite")


# --- Many writers --------------------------------------------------------------------------


def test_many_writers_on_one_sqlite_store_keep_every_record(fresh: str) -> None:
    keys = [f"w{w}-{i}" for w in range(4) for i in range(3)]
    with_errors: list[BaseException] = []

    def write(mine: list[str]) -> None:
        try:
            for key in mine:
                _log(fresh, key)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            with_errors.append(exc)

    threads = [threading.Thread(target=write, args=(keys[w::4],)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert with_errors == []
    assert _keys(fresh) == Counter(dict.fromkeys(keys, 1))


def test_a_locked_store_is_retried_then_named_with_mlflows_advice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    uri = "sqlite:////tmp/x/mlflow.db"
    calls = [0]

    def locked_twice() -> str:
        calls[0] += 1
        if calls[0] <= 2:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "logged"

    assert store.retry_locked(uri, locked_twice)() == "logged" and calls[0] == 3

    def always_locked() -> None:
        raise RuntimeError("(sqlite3.OperationalError) database is locked")

    with pytest.raises(store.StoreBusy) as caught:
        store.retry_locked(uri, always_locked)()
    assert "tracking server" in str(caught.value) and "mlflow server" in caught.value.fix
    with pytest.raises(ValueError):  # another error is not retried
        store.retry_locked(uri, lambda: (_ for _ in ()).throw(ValueError("bad")))()


# --- A server that answers /health but not its API -----------------------------------------


class _Hanging(BaseHTTPRequestHandler):
    """/health answers; the API (all of it, or all but the health check's probe) sleeps."""

    probe_answers = False

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._answer(b"OK")
        else:
            time.sleep(60)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.probe_answers and self.path == tracking.API_PROBE[0]:
            self._answer(b'{"experiments": []}')
        else:
            time.sleep(60)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def hanging(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_Hanging,), {"probe_answers": getattr(request, "param", False)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _no_user_http_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in client.HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)


@pytest.mark.faults
def test_a_server_that_answers_health_but_hangs_on_its_api_is_refused_in_seconds(
    hanging: str, tiny_paper_dir: Path, tmp_path: Path, monkeypatch, capsys, fault_record
) -> None:
    """It held `repro run` ~95 s per attempt (193 s for one paper): now the health check asks
    the API too and names the server before anything is measured."""
    _no_user_http_settings(monkeypatch)
    real_check, checked = tracking.check_tracking_uri, []

    def timed_check(uri: str) -> None:
        began = time.perf_counter()
        try:
            real_check(uri)
        finally:
            checked.append(time.perf_counter() - began)

    monkeypatch.setattr(tracking, "check_tracking_uri", timed_check)
    argv = ["run", "alpha", "--papers-dir", str(tiny_paper_dir), "--no-ray"]
    began = time.perf_counter()
    code = main([*argv, "--out", str(tmp_path / "out"), "--tracking-uri", hanging])
    seconds = time.perf_counter() - began
    err = capsys.readouterr().err
    survived = code == 2 and checked[0] < 10
    fault_record("mlflow server answers /health, hangs on its API", survived, 0, 0, seconds)
    assert code == 2 and "answers /health, but not" in err and "Fix:" in err
    assert checked[0] < 5 + 5  # the check's 5 s, not MLflow's minutes
    assert seconds < 60  # the whole command, loading the papers on a busy machine included
    assert not (tmp_path / "out" / "alpha.csv").exists()


@pytest.mark.faults
@pytest.mark.parametrize("hanging", [True], indirect=True)
def test_one_request_to_a_hanging_api_costs_at_most_retries_times_timeout(
    hanging: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the defaults (no user settings): (retries + 1) x timeout, 10 s, not MLflow's own
    minutes."""
    _no_user_http_settings(monkeypatch)
    bound = (int(client.HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) + 1) * int(
        client.HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]
    )
    began = time.perf_counter()
    with pytest.raises(Exception, match="(?i)timed? ?out|timeout"):
        client._client(hanging).get_experiment_by_name("repro/alpha")
    assert time.perf_counter() - began < bound + 3


@pytest.mark.parametrize("hanging", [True], indirect=True)
def test_an_api_that_hangs_after_the_check_spools_within_the_users_timeout(
    hanging: str, tiny_paper_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The check's probe answers, every other call hangs: the paper is written, spooled, exit 3,
    and logging cost what the user's MLflow settings allow (2 tries of 1 s for the request that
    failed, and as much for the replay tried at the end), not minutes."""
    monkeypatch.setenv(SPOOL_ENV, str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    argv = ["run", "beta", "--papers-dir", str(tiny_paper_dir), "--no-ray"]
    code = main([*argv, "--out", str(tmp_path / "out"), "--tracking-uri", hanging])
    meta = json.loads((tmp_path / "out" / "beta.json").read_text())
    assert code == 3 and "repro sync" in capsys.readouterr().err
    assert meta["mlflow"]["status"] == "spooled" and len(spool.pending()) == 1
    assert meta["mlflow_seconds"] < 2 * 2 * 1 + 3


def test_reachable_asks_the_api_not_only_health(hanging: str) -> None:
    began = time.perf_counter()
    assert not tracking.reachable(hanging, timeout=1)
    assert time.perf_counter() - began < 3


# --- Malformed spool entries ---------------------------------------------------------------


def _report_entry(folder: Path, uri: str, key: str, tmp_path: Path) -> Path:
    readme = tmp_path / f"README-{key}.md"
    readme.write_text("# report\n")
    fields = {"files": {"markdown": str(readme)}, "tags": {}, "key": key}
    return save_entry("report", uri, "test", fields, f"report-{key}", directory=folder)


def test_malformed_spool_entries_are_set_aside_and_the_valid_ones_behind_them_logged(
    fresh: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "spool"
    first = _report_entry(folder, fresh, "first", tmp_path)
    stamp = first.name.split("-")[0]
    bad = {
        f"{stamp}1-alpha-x.json": "{not json",
        f"{stamp}2-list.json": "[1, 2]",
        f"{stamp}3-other.json": json.dumps({"call": "rm -rf", "uri": fresh}),
        f"{stamp}4-shape.json": json.dumps(
            {"call": "log_paper", "uri": fresh, "paper": "alpha", "session": "s",
             "groups": "not a list", "environment": {}}
        ),
        f"{stamp}5-group.json": json.dumps(
            {"call": "log_paper", "uri": fresh, "paper": "alpha", "session": "s",
             "groups": [{"model": "lenet5"}], "environment": {}}
        ),
        f"{stamp}6-train.json": json.dumps(
            {"call": "train_run", "uri": fresh, "run_name": "r", "experiment": "train",
             "params": {}, "tags": {}, "points": [{"loss": 1.0}]}
        ),
        f"{stamp}7-bench.json": json.dumps(
            {"call": "bench", "uri": fresh, "parent": None, "rows": [1]}
        ),
    }  # fmt: skip
    for name, text in bad.items():
        (folder / name).write_text(text)
    time.sleep(0.01)
    _report_entry(folder, fresh, "last", tmp_path)
    assert main(["sync", "--spool", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "replayed 2 of 9" in out and "7 malformed entr(y/ies) set aside" in out
    assert all(name in out for name in bad)
    assert sorted(p.name for p in (folder / "rejected").iterdir()) == sorted(bad)
    assert spool.pending(folder) == []
    assert _keys(fresh, "report") == Counter({"first": 1, "last": 1})


def test_a_parent_run_whose_spooled_entry_is_malformed_is_marked_failed(
    fresh: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A paper's parent run opened before measuring (RUNNING), its log spooled and then cut
    short on disk: the sync sets the entry aside and ends the parent FAILED, and says so."""
    session = tracking.new_session()
    parent = tracking.open_paper_run(fresh, "alpha", session)
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / f"{time.time_ns()}-alpha-{session}.json").write_text('{"call": "log_pa')
    assert main(["sync", "--spool", str(folder), "--tracking-uri", fresh]) == 0
    out = capsys.readouterr().out
    run = MlflowClient(fresh).get_run(parent)
    assert run.info.status == "FAILED" and "repro.failed_by" in run.data.tags
    assert parent in out and "marked FAILED" in out
