"""Ray tasks: every measurement is a Ray task.

Local Ray with the machine's CPU count by default; ``--ray-address``/``RAY_ADDRESS`` for a cluster.
Analytic measurements run concurrently, one CPU each; timings (the speed suite) are exclusive:
one at a time, each holding a whole node's CPUs or one GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ray
import torch

from repro.errors import ReproError
from repro.execution.state import check_address
from repro.runtime.progress import Progress

# Ray 2.60 announces on stderr, at every start of a local instance, that it switched token
# authentication on. For the harness's own local instance that is noise: authentication stays
# on, and a local default run prints only what the harness has to say.
# Ray re-runs a task whose worker or node died (not one that raised): measurements are pure
# functions of their arguments, and results come back only through the return value.
NODE_FAILURE_RETRIES = 3
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
_AUTH_BANNER = "Token authentication is enabled for this Ray cluster"


class _QuietAuthBanner(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_AUTH_BANNER)


def _start_local(num_cpus: int | None) -> None:
    quiet, auth_log = _QuietAuthBanner(), logging.getLogger(_AUTH_LOGGER)
    auth_log.addFilter(quiet)
    try:
        ray.init(
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    finally:
        auth_log.removeFilter(quiet)


@contextlib.contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """ray.init replaces the process's SIGTERM handler with one that exits at once (status 1,
    after printing its core worker's crash dump); the caller's (repro.runner: SIGTERM is
    handled like Ctrl-C, the results kept and Ray shut down) is put back."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Start or join Ray; returns facts about the cluster for the report."""
    start = time.perf_counter()
    if ray.is_initialized():
        return {"ray_address": address or "local", "ray_startup_s": 0.0}
    with _keep_sigterm_handler():
        _init(address, num_cpus)
    return {
        "ray_address": address or "local",
        "ray_cpus": int(ray.cluster_resources().get("CPU", 0)),
        "ray_startup_s": round(time.perf_counter() - start, 3),
    }


def _init(address: str | None, num_cpus: int | None) -> None:
    if address:
        check_address(address)
        try:
            # WARNING: joining says nothing unless something is wrong ("Connecting to
            # existing Ray cluster..." is Ray's INFO line in every stage of `make reproduce`).
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # noqa: BLE001 - ray raises several types here
            raise ReproError(
                f"joining the Ray cluster at {address!r} failed: {exc}".replace("\n", " "),
                "check that the cluster runs the same Ray and Python versions, or drop "
                "--ray-address to run locally.",
            ) from None
    else:
        _start_local(num_cpus)


@dataclass(frozen=True)
class TaskCall:
    """``fn(*args)`` as one Ray task. ``on_error(args, exc)`` replaces the result of a task that
    fails. ``exclusive`` tasks (timings) run one at a time, each holding a whole node's CPUs, or
    one GPU where the cluster has GPUs, while the others run concurrently around them."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    on_error: Callable[[tuple[Any, ...], BaseException], Any]
    exclusive: bool = False
    units: int = 1  # what the progress counts for this task (its claims)
    label: str = ""  # what the progress names while the task runs (its paper)


def exclusive_resources() -> dict[str, float]:
    """What one exclusive task holds: one GPU (and a CPU to drive it) where the cluster has a
    GPU, otherwise every CPU of the largest node, so no other task shares that node."""
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return {"num_cpus": max([c for c in cpus if c > 0], default=1)}


def _run_with_all_threads(fn: Callable[..., Any], *args: Any) -> Any:
    """In the worker: use as many torch threads as the task holds CPUs (a reused worker may
    have started with one), at normal priority, then restore both."""
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    threads = torch.get_num_threads()
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    torch.set_num_threads(max(1, cpus))
    # Ray starts workers at niceness 15; a timing must not yield to every other process on the
    # node. Lowering niceness needs privileges: without them the timing runs as it is.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def run_calls(
    calls: Sequence[TaskCall],
    desc: str = "measuring",
    unit: str = "claim",
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Run every call as a Ray task, with progress (:class:`repro.runtime.progress.Progress`:
    units done of the total, the label of the oldest unfinished call, an ETA); results come
    back in call order, and each as soon as it is in to ``on_result(index, result)`` (where
    the runner writes a paper whose calls are all done).

    Concurrent calls are all submitted at once; exclusive calls are submitted one after the
    other, each when the previous has finished, so that timings never overlap."""
    out: list[Any] = [None] * len(calls)
    pending: dict[Any, int] = {}
    for i, call in enumerate(calls):
        if not call.exclusive:
            remote = ray.remote(num_cpus=1, max_retries=NODE_FAILURE_RETRIES)(call.fn)
            pending[remote.remote(*call.args)] = i
    queue = [i for i, call in enumerate(calls) if call.exclusive]
    options = exclusive_resources() if queue else {}
    exclusive_running = False

    def submit_next_exclusive() -> None:
        nonlocal exclusive_running
        if queue and not exclusive_running:
            i = queue.pop(0)
            remote = ray.remote(max_retries=NODE_FAILURE_RETRIES, **options)(_run_with_all_threads)
            pending[remote.remote(calls[i].fn, *calls[i].args)] = i
            exclusive_running = True

    submit_next_exclusive()

    def running() -> str:
        waiting = list(pending.values()) + queue
        return calls[min(waiting)].label if waiting else ""

    with Progress(sum(c.units for c in calls), desc, unit=unit) as bar:
        bar.start(running())
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            i = pending.pop(ref)
            try:
                out[i] = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - RayTaskError, worker crash, OOM kill
                out[i] = calls[i].on_error(calls[i].args, exc)
            if on_result is not None:
                on_result(i, out[i])
            if calls[i].exclusive:
                exclusive_running = False
                submit_next_exclusive()
            bar.update(calls[i].units, running())
    return out
