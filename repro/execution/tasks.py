"""Ray tasks: every measurement is a Ray task.

Local Ray with the machine's CPU count by default; ``--ray-address``/``RAY_ADDRESS`` for a cluster.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlparse

from tqdm import tqdm

from repro.errors import ReproError


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


def init_ray(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Start or join Ray; returns facts about the cluster for the report."""
    import ray

    start = time.perf_counter()
    if ray.is_initialized():
        return {"ray_address": address or "local", "ray_startup_s": 0.0}
    if address:
        ok, why = _reachable(address)
        if not ok:
            raise ReproError(
                f"cannot reach the Ray cluster at {address!r} ({why}); nothing was measured.",
                "start the cluster (`ray start --head` on the head node, or "
                "`ray up cluster.yaml`), "
                "check the address with `ray status --address ADDR`, or drop --ray-address / "
                "unset RAY_ADDRESS to run on a local Ray instance.",
            )
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - ray raises several types here
            raise ReproError(
                f"joining the Ray cluster at {address!r} failed: {exc}".replace("\n", " "),
                "check that the cluster runs the same Ray and Python versions, or drop "
                "--ray-address to run locally.",
            ) from None
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return {
        "ray_address": address or "local",
        "ray_cpus": int(ray.cluster_resources().get("CPU", 0)),
        "ray_startup_s": round(time.perf_counter() - start, 3),
    }


def is_initialized() -> bool:
    import ray

    return ray.is_initialized()


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def run_tasks(
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    on_error: Callable[[tuple[Any, ...], BaseException], Any],
    desc: str = "measuring",
) -> list[Any]:
    """Run ``fn(*args)`` for each args tuple as a Ray task, with a progress bar.

    Results come back in the order of ``calls``; a task that fails is replaced by
    ``on_error(args, exc)`` so one failure never loses the other measurements."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    refs = [remote.remote(*args) for args in calls]
    index = {ref: i for i, ref in enumerate(refs)}
    out: list[Any] = [None] * len(refs)
    pending = list(refs)
    with tqdm(total=len(refs), desc=desc, unit="model", disable=None) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ref = done[0]
            i = index[ref]
            try:
                out[i] = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - RayTaskError, worker crash, OOM kill
                out[i] = on_error(calls[i], exc)
            bar.update(1)
    return out
