"""What the harness knows of Ray without importing it: is a cluster address reachable, is Ray
running in this process (stop it if so), how Ray Train names and keeps checkpoints, and SIGTERM
met as Ctrl-C (so a run interrupted either way keeps its results and shuts Ray down). `repro run
--no-ray`, the planner, training in one process and `repro --help` use these; Ray itself loads
with repro.execution.tasks and repro.execution.train, when something runs on it."""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from repro.errors import ReproError

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal's number, as shells report
KEEP_CHECKPOINTS = 2  # Ray Train's num_to_keep
CHECKPOINT_PREFIX = "checkpoint_"  # + the next step, 7 digits (repro.train.session)


def _reachable(address: str, timeout: float = 3.0) -> tuple[bool, str]:
    """Probe a host:port (or ray://host:port) Ray address before handing it to ray.init,
    which otherwise retries for a long time against a dead address."""
    if address in ("auto", "local"):
        return True, ""
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        return False, "it is not of the form host:port or ray://host:port"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, str(exc)


def check_address(address: str | None) -> None:
    """A ReproError, before anything runs, when the cluster at ``address`` does not answer
    (None: a local Ray, nothing to check). Imports no Ray."""
    if not address:
        return
    ok, why = _reachable(address)
    if not ok:
        raise ReproError(
            f"cannot reach the Ray cluster at {address!r} ({why}); nothing was measured.",
            "start the cluster (`ray start --head` on the head node, or "
            "`ray up cluster.yaml`), "
            "check the address with `ray status --address ADDR`, or drop --ray-address / "
            "unset RAY_ADDRESS to run on a local Ray instance.",
        )


def is_initialized() -> bool:
    """Ray cannot run in this process unless something imported it."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def shutdown() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so that both keep the results."""


def signal_name(exc: BaseException) -> str:
    """SIGTERM for :class:`Terminated`, else SIGINT (Ctrl-C, or Ray Train's exit on it)."""
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (in the main thread; ray.init
    keeps it, see repro.execution.tasks.init_ray)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
