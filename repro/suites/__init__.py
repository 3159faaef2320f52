"""The suites: each measures one kind of claim, one class each. Importing this package registers
every suite (``repro.suites.registry``), in the order the runner plans and reports them; it
loads on `repro --help`, so the suites import torch only where they measure.

``analytic``: parameters, FLOPs, activations, shapes of the built network; ``speed``: the
papers' test-time claims timed here; ``accuracy``: trained by recipe (or loaded) and evaluated
by protocol; ``dataset``: the datasets' own numbers. The suites never import one another; what
they share is the registry, the judging vocabulary (repro.verdicts) and the settings
(repro.config's ``AccuracySettings`` and ``SpeedSettings``).
"""

# Registration order is the order the CLI lists the suites and the runner measures them.
from repro.suites import analytic  # noqa: F401, I001
from repro.suites import speed  # noqa: F401
from repro.suites import accuracy  # noqa: F401
from repro.suites import dataset  # noqa: F401
from repro.suites.registry import Group, Suite, get_suite, register_suite, suite_names, suite_of

__all__ = ["Group", "Suite", "get_suite", "register_suite", "suite_names", "suite_of"]
