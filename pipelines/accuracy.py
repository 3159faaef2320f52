"""DVC stage `accuracy`: train and judge the accuracy claims of params.yaml's
`accuracy_stage.papers` (Fashion-MNIST's, about 15 minutes on 2 CPU cores) into
benchmarks/accuracy_claims/<environment>/, or keep the committed results where
`accuracy_stage.retrain` says not to (the default, never; the report renders them either way).
The accuracy suite's knobs are params.yaml's `accuracy:`."""

from __future__ import annotations

import sys

from repro.runner.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    return run_stage("accuracy", argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
