"""Ray: the only package that imports ray.

``address``: reachability of a cluster and Ray's state in this process, without importing Ray;
``tasks``: measurements as Ray tasks (local Ray by default, ``--ray-address`` for a cluster);
``train``: Ray Train worker groups; ``jobs``: Ray Jobs on a cluster (`repro submit`);
``upload``: what a job uploads (git's tracked files plus those named, no secret), without Ray;
``shared``: one local instance for the stages of `make reproduce`; ``cluster``: cluster checks.
Everything else in repro is plain library code that runs without Ray.
"""
