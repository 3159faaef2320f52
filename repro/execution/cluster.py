"""What a Ray cluster looks like from a driver: its live nodes, and where tasks land.

`python -m repro.execution.cluster --address HOST:6379 --nodes 2` joins the cluster, waits for
that many live nodes, runs one 1-CPU task per CPU at once and prints, as JSON, the nodes and the
node each task ran on: a quick check that work spreads over every node after `ray up`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import ray

from repro.errors import ReproError
from repro.execution.state import shutdown
from repro.execution.tasks import init_ray


def live_nodes() -> list[dict[str, Any]]:
    """The cluster's live nodes: id, address and resources (CPU, GPU, ...)."""
    return [
        {
            "node_id": n["NodeID"],
            "address": n["NodeManagerAddress"],
            "resources": {k: v for k, v in n["Resources"].items() if "node:" not in k},
        }
        for n in ray.nodes()
        if n["Alive"]
    ]


def wait_for_nodes(count: int, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Waits until ``count`` nodes are alive (a node that was just started registers late)."""
    deadline = time.monotonic() + timeout_s
    nodes = live_nodes()
    while len(nodes) < count and time.monotonic() < deadline:
        time.sleep(0.25)
        nodes = live_nodes()
    if len(nodes) < count:
        raise ReproError(
            f"the Ray cluster has {len(nodes)} live node(s) after {timeout_s:.0f} s; "
            f"{count} were expected.",
            "check the worker nodes with `ray status` and their logs under /tmp/ray on each node.",
        )
    return nodes


def _where(hold_s: float) -> str:
    time.sleep(hold_s)  # holds the CPU, so the other tasks must go elsewhere
    return ray.get_runtime_context().get_node_id()


def task_nodes(tasks: int, hold_s: float = 1.0) -> list[str]:
    """Runs ``tasks`` concurrent tasks that each need one CPU; returns the node id of each.

    With one task per CPU in the cluster, every task holds a CPU while the others are placed,
    so they can only all run if they spread over the nodes."""
    remote = ray.remote(num_cpus=1, max_retries=0)(_where)
    return ray.get([remote.remote(hold_s) for _ in range(tasks)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repro.execution.cluster", description=__doc__)
    parser.add_argument("--address", required=True, help="Ray address (HOST:6379 or ray://...)")
    parser.add_argument("--nodes", type=int, default=1, help="live nodes to wait for")
    parser.add_argument("--tasks", type=int, help="tasks to run (default: the cluster's CPUs)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for nodes")
    args = parser.parse_args(argv)

    try:
        info = init_ray(args.address)
        nodes = wait_for_nodes(args.nodes, args.timeout)
        cpus = int(sum(n["resources"].get("CPU", 0) for n in nodes))
        placed = task_nodes(args.tasks or cpus)
    except ReproError as exc:
        print(exc.paragraph(), file=sys.stderr)
        return 2
    finally:
        shutdown()
    report = {"ray_address": info["ray_address"], "nodes": nodes, "task_nodes": placed}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
