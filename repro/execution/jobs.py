"""Ray Jobs: run a `repro` command on a cluster from this machine.

The job server lives in the head node's dashboard (``ray[default]``), reached over HTTP at
``http://HEAD:8265``. The code and claim files go with the job as one zip of what
`repro.execution.upload` allows (git's tracked files plus those named), so the cluster runs
them as they are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from ray.exceptions import AuthenticationError

from repro.errors import ReproError

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"

TERMINAL = ("STOPPED", "SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: str  # PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    exit_code: int | None  # the entrypoint's exit status; None until it has finished
    message: str

    def line(self) -> str:
        code = "" if self.exit_code is None else f", exit code {self.exit_code}"
        text = f"job {self.job_id}: {self.status}{code}"
        return f"{text} ({self.message})" if self.message else text


def dashboard_url(address: str | None) -> str:
    """The job server's URL: ``--address``, else RAY_API_SERVER_ADDRESS, else the local default.

    RAY_ADDRESS is not consulted: it names the GCS or Ray Client port that `repro run` joins,
    not the dashboard."""
    raw = (address or os.environ.get("RAY_API_SERVER_ADDRESS") or DEFAULT_DASHBOARD).strip()
    if raw.startswith("ray://"):
        raise ReproError(
            f"{raw!r} is a Ray Client address; `repro submit` talks to the Ray Jobs API on the "
            "head node's dashboard.",
            "pass --address http://HEAD:8265 (or forward it with `ray dashboard cluster.yaml` "
            "and pass http://127.0.0.1:8265).",
        )
    url = raw if "://" in raw else f"http://{raw}"
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not parsed.port:
        raise ReproError(
            f"{raw!r} is not a dashboard address of the form http://HOST:PORT.",
            "pass --address http://HEAD:8265.",
        )
    return url.rstrip("/")


def entrypoint_command(command: Sequence[str]) -> str:
    """One argument is taken as a shell command line as written; several are quoted word by
    word, so `repro submit -- repro run --all` and `repro submit -- 'repro run --all'` agree."""
    if not command:
        raise ReproError(
            "no command to run on the cluster.",
            "put the command after `--`, e.g. `repro submit -- repro run --all`.",
        )
    return command[0] if len(command) == 1 else shlex.join(command)


def runtime_env(package: Path | None, env_vars: dict[str, str]) -> dict[str, Any]:
    """The job's runtime_env: the code as one zip (`repro.execution.upload`; the job client
    uploads a local package as it is) and the job's environment variables."""
    out: dict[str, Any] = {}
    if package is not None:
        out["working_dir"] = str(package)
    if env_vars:
        out["env_vars"] = dict(env_vars)
    return out


def _probe(url: str, timeout: float = 3.0) -> None:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            return
    except OSError as exc:
        why = str(exc)
    raise ReproError(
        f"cannot reach the Ray job server at {url} ({why}); nothing was submitted.",
        "start the cluster with its dashboard (`ray up cluster.yaml`, or `ray start --head "
        "--include-dashboard true`), forward the port with `ray dashboard cluster.yaml` if the "
        "head is remote, and pass --address http://HEAD:8265.",
    )


@contextlib.contextmanager
def _without_address_env() -> Iterator[None]:
    """JobSubmissionClient lets RAY_ADDRESS/RAY_API_SERVER_ADDRESS override its argument; here
    the resolved --address must win."""
    saved = {
        k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") if k in os.environ
    }
    try:
        yield
    finally:
        os.environ.update(saved)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


_AUTH_FIX = (
    "this cluster uses Ray token authentication: set RAY_AUTH_MODE=token and "
    "RAY_AUTH_TOKEN (the output of `ray get-auth-token` on the head node) or "
    "RAY_AUTH_TOKEN_PATH here, then submit again."
)


def connect(address: str | None) -> Any:
    """A JobSubmissionClient for the cluster, or a ReproError naming the address and the fix."""
    url = dashboard_url(address)
    _probe(url)
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise ReproError(
            f"the Ray Jobs client is not installed ({exc}).",
            "install the project's dependencies: pip install -e . (it needs ray[default]).",
        ) from None
    try:
        with _without_address_env():
            return JobSubmissionClient(url)
    except AuthenticationError as exc:
        raise ReproError(
            f"the job server at {url} refused the request: {_one_line(exc)}", _AUTH_FIX
        ) from None
    except (OSError, RuntimeError, ValueError) as exc:  # requests errors are OSErrors
        raise ReproError(
            f"{url} does not answer as a Ray job server: {_one_line(exc)}",
            "check that the address is the dashboard port (8265 by default) of a Ray head node "
            "started with the dashboard (ray[default] installed there).",
        ) from None


def _request(what: str, fix: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Calls into the client, with the errors a user can cause turned into ReproErrors."""
    try:
        return fn(*args, **kwargs)
    except AuthenticationError as exc:
        raise ReproError(f"{what} was refused: {_one_line(exc)}", _AUTH_FIX) from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise ReproError(f"{what} failed: {_one_line(exc)}", fix) from None


def submit(
    client: Any,
    entrypoint: str,
    env: dict[str, Any],
    *,
    submission_id: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
) -> str:
    """Submits the job (uploading the working directory first); returns its id."""
    return _request(
        "submitting the job",
        "check the upload's size (`repro submit --dry-run` lists it; Ray refuses packages over "
        "512 MiB), that a --job-id is not already used, and that the cluster is up.",
        client.submit_job,
        entrypoint=entrypoint,
        runtime_env=env,
        submission_id=submission_id,
        entrypoint_num_cpus=num_cpus,
        entrypoint_num_gpus=num_gpus,
        metadata={"submitted_by": "repro submit"},
    )


_JOB_ID_FIX = (
    "check the job id (`ray job list --address ADDR` lists them) and that the cluster is up."
)


def outcome(client: Any, job_id: str) -> JobOutcome:
    info = _request(f"looking up job {job_id}", _JOB_ID_FIX, client.get_job_info, job_id)
    return JobOutcome(job_id, str(info.status), info.driver_exit_code, info.message or "")


def logs(client: Any, job_id: str) -> str:
    return _request(f"reading the logs of job {job_id}", _JOB_ID_FIX, client.get_job_logs, job_id)


def stop(client: Any, job_id: str) -> bool:
    return bool(_request(f"stopping job {job_id}", _JOB_ID_FIX, client.stop_job, job_id))


def _poll_logs(client: Any, job_id: str, out: TextIO, seen: int, poll_s: float) -> None:
    """Fallback when the log websocket fails: re-read the (append-only) log and print the rest."""
    while True:
        finished = outcome(client, job_id).status in TERMINAL
        text = logs(client, job_id)
        out.write(text[seen:])
        out.flush()
        seen = len(text)
        if finished:
            return
        time.sleep(poll_s)


def follow(
    client: Any,
    job_id: str,
    out: TextIO | None = None,
    poll_s: float = 1.0,
    settle_s: float = 30.0,
) -> JobOutcome:
    """Streams the job's output to ``out`` (stdout) until it ends; returns how it ended."""
    out = out or sys.stdout
    written = 0  # what was printed, so a fallback to polling does not print it twice

    async def tail() -> None:
        nonlocal written
        async for chunk in client.tail_job_logs(job_id):
            written += len(chunk)
            out.write(chunk)
            out.flush()

    try:
        asyncio.run(tail())
    except Exception:  # noqa: BLE001 - websocket/aiohttp errors of several kinds
        _poll_logs(client, job_id, out, written, poll_s)
    # The log stream closes when the driver exits; the status can lag a moment behind.
    deadline = time.monotonic() + settle_s
    result = outcome(client, job_id)
    while result.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(poll_s)
        result = outcome(client, job_id)
    return result


def exit_code(result: JobOutcome) -> int:
    """The entrypoint's own exit status; 1 when the job failed before or around it."""
    if result.exit_code is not None:
        return result.exit_code
    return 0 if result.status == "SUCCEEDED" else 1
