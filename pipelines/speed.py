"""DVC stage `speed`: re-time the papers' speed claims (R-CNN, Fast/Faster R-CNN, YOLO,
GoogLeNet) into benchmarks/speed_claims/<environment>/, or keep the committed results where
params.yaml's `speed_stage.retime` says not to (auto: only where torch sees a GPU)."""

from __future__ import annotations

import sys

from repro.runner.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    return run_stage("speed", argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
