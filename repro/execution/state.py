"""What the harness knows of Ray without importing it: is a cluster address reachable, is Ray
running in this process (stop it if so), how Ray Train names and keeps checkpoints. `repro run
--no-ray`, the planner, training in one process and `repro --help` use these; Ray itself loads
with repro.execution.tasks and repro.execution.train, when something runs on it."""

from __future__ import annotations

import socket
import sys
from urllib.parse import urlparse

from repro.errors import ReproError

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
