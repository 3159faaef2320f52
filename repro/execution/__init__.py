"""Ray: the only package that imports ray.

``tasks``: measurements as Ray tasks (local Ray by default, ``--ray-address`` for a cluster).
Everything else in repro is plain library code that runs without Ray.
"""

from repro.execution.tasks import TaskCall, init_ray, is_initialized, run_calls, shutdown

__all__ = ["TaskCall", "init_ray", "is_initialized", "run_calls", "shutdown"]
