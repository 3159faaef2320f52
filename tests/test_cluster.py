"""Running on a cluster: cluster.yaml against Ray's own launcher schema, `repro submit`'s
arguments and errors, and a real two-node Ray cluster on this machine (`ray start` twice)
that `repro run --ray-address` and `repro submit` drive.

The cluster is started with `ray start --block` per node in its own temp dir and ports, and
torn down by terminating exactly those processes: `ray stop` would stop every Ray process on
the machine, including other people's.
"""

from __future__ import annotations

import copy
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import psutil
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from repro.cli import main
from repro.execution import jobs, upload
from repro.submit import job_env
from tests.conftest import TINY_ALPHA

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- cluster.yaml, validated the way `ray up` validates it -------------------------------------


def _launcher_config(repo: Path) -> dict:
    return yaml.safe_load((repo / "cluster.yaml").read_text())


def _ray_up_validation(config: dict) -> dict:
    """What `ray up` does before it talks to the cloud: merge the provider's defaults
    (prepare_config) and check the result against ray/autoscaler/ray-schema.json and Ray's
    own cross-field rules (validate_config)."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_launcher_validation(repo: Path) -> None:
    prepared = _ray_up_validation(_launcher_config(repo))
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and types["head"]["max_workers"] == 0
    gpu_types = [t for t, spec in types.items() if spec["resources"].get("GPU", 0) > 0]
    assert gpu_types and all(types[t]["max_workers"] >= 1 for t in gpu_types)
    assert prepared["provider"]["type"] == "aws" and prepared["provider"]["region"]


def test_cluster_yaml_with_a_misspelled_key_fails_validation(repo: Path) -> None:
    config = _launcher_config(repo)
    config["available_node_types"]["gpu_a10g"]["max_worker"] = 2  # for max_workers
    with pytest.raises(jsonschema.ValidationError, match="'max_worker' was unexpected"):
        _ray_up_validation(config)
    config = _launcher_config(repo)
    config["head_node_type"] = "gpu_a10"  # not a node type
    with pytest.raises(ValueError, match="head_node_type"):
        _ray_up_validation(config)


def test_cluster_yaml_matches_this_project(repo: Path) -> None:
    """The nodes must run this Ray and Python, the pinned torch, the project, and get neither
    the local stores nor the environments copied over."""
    config = _launcher_config(repo)
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-{py}-gpu"
    pyproject = (repo / "pyproject.toml").read_text()
    setup = " ".join(config["setup_commands"])
    for pin in ("torch==", "torchvision=="):
        version = pyproject.split(f'"{pin}')[1].split('"')[0]
        assert f"{pin}{version}" in setup
    assert "pip install -q -e ~/repro" in setup and config["file_mounts"]["~/repro"] == "."
    excluded = set(config["rsync_exclude"])
    for path in (".venv", "mlflow.db", "mlartifacts", ".dvc/cache", "reports"):
        assert path in excluded
        assert path in upload.UPLOAD_EXCLUDES or f"{path}/" in upload.UPLOAD_EXCLUDES
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-port=8265" in head and "--dashboard-host=0.0.0.0" in head
    assert jobs.DEFAULT_DASHBOARD.endswith(":8265")


# --- repro submit: arguments and the errors a user meets -----------------------------------------


def test_dashboard_address_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # the GCS: not what submit talks to
    assert jobs.dashboard_url(None) == "http://127.0.0.1:8265"
    assert jobs.dashboard_url("head:8265") == "http://head:8265"
    assert jobs.dashboard_url("https://head:443/") == "https://head:443"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.1:8265")
    assert jobs.dashboard_url(None) == "http://10.0.0.1:8265"
    assert jobs.dashboard_url("http://other:8265") == "http://other:8265"
    with pytest.raises(jobs.ReproError, match="Ray Client address"):
        jobs.dashboard_url("ray://head:10001")
    with pytest.raises(jobs.ReproError, match="HOST:PORT"):
        jobs.dashboard_url("http://head")


def test_job_command_env_and_upload(tmp_path: Path) -> None:
    assert jobs.entrypoint_command(["repro", "run", "--all"]) == "repro run --all"
    assert jobs.entrypoint_command(["echo a && echo b"]) == "echo a && echo b"
    assert jobs.entrypoint_command(["python", "-c", "print(1)"]) == "python -c 'print(1)'"
    env = job_env("http://mlflow:5000", ["imagenet=/mnt/in", "coco=/c"], ["A=b=c"])
    assert env == {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "REPRO_DATA_IMAGENET": "/mnt/in",
        "REPRO_DATA_COCO": "/c",
        "A": "b=c",
    }
    spec = jobs.runtime_env(tmp_path / "code.zip", env)
    assert spec == {"working_dir": str(tmp_path / "code.zip"), "env_vars": env}
    assert jobs.runtime_env(None, {}) == {}
    with pytest.raises(jobs.ReproError, match="NAME=VALUE"):
        job_env(None, ["imagenet"], None)
    with pytest.raises(jobs.ReproError, match="does not exist"):
        upload.upload_files(tmp_path / "absent")


def test_submit_errors_are_one_paragraph(capsys: pytest.CaptureFixture[str]) -> None:
    port = _free_port()
    code = main(["submit", "--address", f"http://127.0.0.1:{port}", "--", "echo", "hi"])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot reach the Ray job server at http://127.0.0.1:{port}" in err
    assert "Fix:" in err and "Traceback" not in err and err.count("\n") == 1
    assert main(["submit", "--address", f"127.0.0.1:{port}"]) == 2
    assert "no command to run" in capsys.readouterr().err
    assert main(["submit", "--address", "ray://head:10001", "--", "true"]) == 2
    assert "http://HEAD:8265" in capsys.readouterr().err


class _DroppingLogStream:
    """A job client whose log websocket breaks after the first line, while the job goes on."""

    def __init__(self) -> None:
        self.lookups = 0

    async def tail_job_logs(self, job_id: str):  # noqa: ANN201
        yield "line 1\n"
        raise RuntimeError("WebSocket connection closed unexpectedly")

    def get_job_logs(self, job_id: str) -> str:
        return "line 1\nline 2\n" if self.lookups < 2 else "line 1\nline 2\nline 3\n"

    def get_job_info(self, job_id: str) -> SimpleNamespace:
        self.lookups += 1
        done = self.lookups >= 3
        return SimpleNamespace(
            status="FAILED" if done else "RUNNING",
            driver_exit_code=4 if done else None,
            message="",
        )


def test_follow_falls_back_to_polling_without_repeating_output() -> None:
    out = io.StringIO()
    result = jobs.follow(_DroppingLogStream(), "j1", out=out, poll_s=0)
    assert out.getvalue() == "line 1\nline 2\nline 3\n"
    assert (result.status, jobs.exit_code(result)) == ("FAILED", 4)


def test_job_exit_code() -> None:
    assert jobs.exit_code(jobs.JobOutcome("j", "FAILED", 3, "")) == 3
    assert jobs.exit_code(jobs.JobOutcome("j", "SUCCEEDED", None, "")) == 0
    assert jobs.exit_code(jobs.JobOutcome("j", "FAILED", None, "runtime env failed")) == 1
    assert jobs.exit_code(jobs.JobOutcome("j", "STOPPED", None, "")) == 1
    line = jobs.JobOutcome("j", "FAILED", 3, "it broke").line()
    assert line == "job j: FAILED, exit code 3 (it broke)"


# --- a two-node Ray cluster on this machine ---------------------------------------------------


@dataclass
class LocalCluster:
    gcs: str  # host:port for --ray-address
    dashboard: str  # http://host:port for repro submit
    env: dict[str, str]  # what a client needs: PATH and the token settings
    probe: dict  # python -m repro.execution.cluster's report
    root: Path


def _wait(predicate, timeout_s: float, what: str, logs: Path) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    tails = [p.read_text()[-2000:] for p in sorted(logs.glob("*.log"))]
    raise TimeoutError(f"{what} not ready after {timeout_s} s:\n" + "\n".join(tails))


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _jobs_api_up(url: str, token: str) -> bool:
    request = urllib.request.Request(
        f"{url}/api/version", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop_node(proc: subprocess.Popen) -> None:
    """SIGTERM to the `ray start --block` process makes it stop its own Ray processes; any
    that outlive it are killed by pid."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[LocalCluster]:
    # Short root: Ray's unix sockets live below it and their paths are limited to 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    token = secrets.token_hex(32)
    (root / "token").write_text(token)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # Ray 2.60 turns token authentication on for a head that finds ~/.ray/auth_token, and
        # clients joining by address do not follow; a token of the test's own, set explicitly
        # on every process, keeps the cluster independent of that file.
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(root / "token"),
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        RAY_USAGE_STATS_ENABLED="0",
    )
    gcs, dash, client, agent_head, agent_worker = (_free_port() for _ in range(5))
    node = ["--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", "100000000"]
    node += ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"]
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> None:
        log = (root / f"{name}.log").open("w")
        cmd = [str(BIN / "ray"), "start", *args, "--temp-dir", str(root / name), *node]
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root))

    try:
        start("head", ["--head", "--port", str(gcs), "--include-dashboard", "true",
                       "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                       "--ray-client-server-port", str(client),
                       "--dashboard-agent-listen-port", str(agent_head)])  # fmt: skip
        _wait(lambda: _port_open(gcs), 60, "the head's GCS", root)
        start("worker", ["--address", f"127.0.0.1:{gcs}",
                         "--dashboard-agent-listen-port", str(agent_worker)])  # fmt: skip
        url = f"http://127.0.0.1:{dash}"
        _wait(lambda: _jobs_api_up(url, token), 90, "the job server", root)
        probe = subprocess.run(
            [str(BIN / "python"), "-m", "repro.execution.cluster", "--address",
             f"127.0.0.1:{gcs}", "--nodes", "2", "--tasks", "2"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stdout + probe.stderr
        yield LocalCluster(f"127.0.0.1:{gcs}", url, env, json.loads(probe.stdout), root)
    finally:
        for proc in reversed(procs):  # the worker node first, then the head
            _stop_node(proc)
        shutil.rmtree(root, ignore_errors=True)


def _repro(cluster: LocalCluster, *args: str, cwd: Path, timeout: int = 180):
    return subprocess.run(
        [str(BIN / "repro"), *args],
        env=cluster.env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tasks_land_on_both_nodes(two_nodes: LocalCluster) -> None:
    nodes = two_nodes.probe["nodes"]
    assert len(nodes) == 2 and all(n["resources"]["CPU"] == 1 for n in nodes)
    placed = two_nodes.probe["task_nodes"]
    assert len(placed) == 2 and set(placed) == {n["node_id"] for n in nodes}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_repro_run_against_the_cluster(two_nodes: LocalCluster, tmp_path: Path) -> None:
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "alpha.yaml").write_text(TINY_ALPHA)
    done = _repro(two_nodes, "run", "alpha", "--papers-dir", "papers", "--no-mlflow",
                  "--ray-address", two_nodes.gcs, "--out", "out", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "alpha: 1 not-run, 2 reproduced" in done.stdout
    meta = json.loads((tmp_path / "out" / "alpha.json").read_text())
    assert meta["ray_address"] == two_nodes.gcs and meta["ray_cpus"] == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_submit_runs_repro_as_a_ray_job(two_nodes: LocalCluster, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "papers").mkdir(parents=True)
    (work / "papers" / "alpha.yaml").write_text(TINY_ALPHA)
    (work / ".venv").mkdir()
    (work / ".venv" / "big").write_bytes(b"\0" * 1024)
    (work / "mlflow.db").write_text("local store")
    subprocess.run(["git", "init", "-q", str(work)], check=True)  # what git tracks is uploaded
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    # Excluded paths must not arrive; the env vars must; `repro run` inside the job joins the
    # cluster through the RAY_ADDRESS that Ray Jobs sets.
    command = (
        "test ! -e .venv && test ! -e mlflow.db && echo uploaded-ok && "
        'echo "data=$REPRO_DATA_IMAGENET uri=$MLFLOW_TRACKING_URI" && '
        "repro run alpha --papers-dir papers --no-mlflow --out out && cat out/alpha.json"
    )
    done = _repro(two_nodes, "submit", "--address", two_nodes.dashboard, "--working-dir",
                  str(work), "--data", "imagenet=/mnt/in", "--tracking-uri",
                  "http://mlflow:5000", "--", command, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uploaded-ok" in done.stdout
    assert "data=/mnt/in uri=http://mlflow:5000" in done.stdout
    assert "alpha: 1 not-run, 2 reproduced" in done.stdout
    assert '"ray_cpus": 2' in done.stdout
    assert "SUCCEEDED, exit code 0" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_submit_returns_the_jobs_exit_code(two_nodes: LocalCluster, tmp_path: Path) -> None:
    script = "import sys; print('failing on purpose'); sys.exit(3)"
    done = _repro(two_nodes, "submit", "--address", two_nodes.dashboard, "--no-upload",
                  "--", "python", "-c", script, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "failing on purpose" in done.stdout and "FAILED, exit code 3" in done.stderr

    queued = _repro(two_nodes, "submit", "--address", two_nodes.dashboard, "--no-upload",
                    "--no-wait", "--", "echo later", cwd=tmp_path)  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.strip()
    assert job_id.startswith("raysubmit_")
    deadline = time.monotonic() + 60
    status = ""
    while "SUCCEEDED" not in status and time.monotonic() < deadline:
        time.sleep(1)
        status = _repro(two_nodes, "submit", "--address", two_nodes.dashboard, "--status",
                        job_id, cwd=tmp_path).stdout  # fmt: skip
    assert f"job {job_id}: SUCCEEDED, exit code 0" in status
    shown = _repro(two_nodes, "submit", "--address", two_nodes.dashboard, "--logs", job_id,
                   cwd=tmp_path)  # fmt: skip
    assert shown.returncode == 0 and "later" in shown.stdout.splitlines()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_submit_without_the_token_is_refused(two_nodes: LocalCluster, tmp_path: Path) -> None:
    env = dict(two_nodes.env, RAY_AUTH_MODE="disabled")
    done = subprocess.run(
        [str(BIN / "repro"), "submit", "--address", two_nodes.dashboard, "--", "true"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"the job server at {two_nodes.dashboard} refused the request" in done.stderr
    assert "RAY_AUTH_MODE=token" in done.stderr and "Traceback" not in done.stderr
