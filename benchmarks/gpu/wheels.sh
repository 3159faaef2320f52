#!/usr/bin/env bash
# The wheels the GPU machine lacks, for its Python 3.12, into .whl/ (ignored by git): pydantic
# and its needs, at the versions this checkout's .venv runs. Run here, before a device call that
# carries .whl (benchmarks/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP=${PIP:-.venv/bin/python -m pip}
mkdir -p .whl
for name in pydantic pydantic-core annotated-types typing-inspection; do
  version=$($PIP show "$name" | awk '/^Version:/ {print $2}')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$name==$version"
done
ls -la .whl
