#!/usr/bin/env bash
# The GPU side of the harness in one command, for one lent GPU (sized for about 8 minutes on one
# H200): bench inference and training at bf16 + channels_last, batch auto, torch.compile, the
# timm side by side, the papers' speed claims, GPU JPEG decode and DDP over NCCL (world size 1).
#
#   benchmarks/gpu/run.sh OUT             on the GPU machine (OUT: $OUT there)
#   benchmarks/gpu/run.sh OUT --dry-run   the same steps on the CPU at tiny sizes (a test runs it)
#
# Runs with torch alone (no Ray, MLflow or DVC; every step passes --no-mlflow / --no-ray), with
# repro imported from this checkout. Wheels the machine lacks (pydantic, for the claims' schema)
# travel in .whl/ (benchmarks/gpu/README.md says how) and are installed to /tmp/site first.
# timm's benchmark.py is not in the timm wheel: put a copy at .timm/benchmark.py (ignored) or set
# TIMM_BENCHMARK, else that step is recorded as not run.
#
# Every step runs even when one before it failed; OUT/steps.csv records each (name, exit status,
# seconds, what it wrote) and OUT/run.log the whole output. All result files are also packed into
# OUT/results.tar.gz, because the device tool returns at most 8 files.
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu/run.sh OUT [--dry-run]}
DRY=0
[[ ${2:-} == --dry-run ]] && DRY=1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
LOG=$OUT/run.log
: >"$LOG"

if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

if ((DRY)); then
  DEVICE=cpu BATCH=2 WARMUP=1 ITERS=1 REPEATS=1 MAX_BATCH=4 TIMM_BATCH=2 DDP_BATCH=2 STEPS=2
  # small networks through the same commands: bf16 training of VGG on 2 cores takes minutes,
  # and inductor compiles resnet50's training step for minutes on a CPU
  MODELS="lenet5 resnet20" BIG=resnet20 COMPILE_MODEL=lenet5
  JPEG="--images 8 --batch 4 --repeats 1"
  # a tiny speed suite: few proposals, a small image and scale, one repeat
  export REPRO_SPEED_PROPOSALS=8 REPRO_SPEED_IMAGE_HEIGHT=64 REPRO_SPEED_IMAGE_WIDTH=80 \
    REPRO_SPEED_SCALE=64 REPRO_SPEED_MAX_SIZE=96 REPRO_SPEED_RCNN_BATCH=8 \
    REPRO_SPEED_WARMUP=0 REPRO_SPEED_REPEATS=1 REPRO_SPEED_MIN_REPEAT_S=0.01 REPRO_SPEED_BUDGET_S=5
else
  DEVICE=cuda BATCH=256 WARMUP=5 ITERS=20 REPEATS=3 MAX_BATCH=2048 TIMM_BATCH=256 DDP_BATCH=256
  STEPS=30 JPEG="--images 512 --batch 128 --repeats 5"
  MODELS="resnet50 vgg_d alexnet googlenet" BIG=resnet50 COMPILE_MODEL=resnet50
  # the papers' sizes, fewer repeats and a budget per pipeline, so the suite fits its share
  export REPRO_SPEED_REPEATS=${REPRO_SPEED_REPEATS:-2} REPRO_SPEED_BUDGET_S=${REPRO_SPEED_BUDGET_S:-40}
fi
COMMON=(--precision bf16 --channels-last --device "$DEVICE" --warmup "$WARMUP" --iters "$ITERS"
  --repeats "$REPEATS" --no-mlflow --out "$OUT")
REPRO=("$PY" -m repro.cli)

echo "step,exit,seconds,note" >"$OUT/steps.csv"
step() { # step NAME COMMAND...: run it, log it, record it
  local name=$1 start rc
  shift
  echo "=== $name: $*" >>"$LOG"
  start=$(date +%s%N)
  "$@" >>"$LOG" 2>&1
  rc=$?
  local ms=$((($(date +%s%N) - start) / 1000000))
  printf '%s,%s,%d.%d,\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) >>"$OUT/steps.csv"
  echo "$name: exit $rc" >&2
}
skip() { # skip NAME WHY
  echo "=== $1: not run ($2)" >>"$LOG"
  printf '%s,,0,"not run: %s"\n' "$1" "$2" >>"$OUT/steps.csv"
  echo "$1: not run ($2)" >&2
}

"${REPRO[@]}" env >"$OUT/environment.txt" 2>>"$LOG"
# 1. inference and training, bf16 + channels_last, batch 256; resnet50 training at the largest batch
# shellcheck disable=SC2086 # MODELS is a list
step bench-infer "${REPRO[@]}" bench $MODELS --mode infer --batch-size "$BATCH" "${COMMON[@]}"
step bench-train "${REPRO[@]}" bench $MODELS --mode train --batch-size "$BATCH" "${COMMON[@]}"
step bench-train-auto "${REPRO[@]}" bench "$BIG" --mode train --batch-size auto \
  --max-batch "$MAX_BATCH" "${COMMON[@]}"
# 2. the same training step compiled: compile time apart, images/s after
step bench-train-compile "${REPRO[@]}" bench "$COMPILE_MODEL" --mode train --batch-size "$BATCH" \
  --compile "${COMMON[@]}"
# 3. timm's benchmark.py on the same network, batch, precision and memory format
TIMM_BENCHMARK=${TIMM_BENCHMARK:-.timm/benchmark.py}
if [[ -f $TIMM_BENCHMARK ]] && "$PY" -c "import timm" 2>/dev/null; then
  step compare-timm "$PY" benchmarks/compare_timm.py --timm-benchmark "$TIMM_BENCHMARK" \
    --model "$BIG" --batch-size "$TIMM_BATCH" --precision bf16 --channels-last \
    --device "$DEVICE" --warmup "$WARMUP" --iters "$ITERS" --rounds 2 --out "$OUT"
else
  skip compare-timm "no timm package or no timm benchmark.py at $TIMM_BENCHMARK"
fi
# 4. the papers' speed claims (R-CNN, Fast/Faster R-CNN, YOLO, Fast YOLO, GoogLeNet), judged here
step speed-claims "${REPRO[@]}" run rcnn fast_rcnn faster_rcnn yolo_v1 googlenet --suite speed \
  --no-ray --no-mlflow --out "$OUT/speed_claims"
# 5. JPEG decode: nvJPEG on the GPU against the CPU decoder
# shellcheck disable=SC2086
step jpeg-decode "$PY" benchmarks/gpu/jpeg_decode.py $JPEG --out "$OUT"
# 6. DDP over NCCL with world size 1: the data-parallel path, without Ray
step ddp-one "$PY" benchmarks/gpu/ddp_one.py --model "$BIG" --batch-size "$DDP_BATCH" \
  --steps "$STEPS" --precision bf16 --channels-last --out "$OUT"

(cd "$OUT" && tar -czf results.tar.gz --exclude results.tar.gz -- *.csv speed_claims environment.txt \
  2>>"$LOG")
failed=$(awk -F, 'NR > 1 && $2 != "" && $2 != "0"' "$OUT/steps.csv" | wc -l)
echo "done: $(($(wc -l <"$OUT/steps.csv") - 1)) steps, $failed failed; see $OUT/steps.csv" >&2
exit $((failed > 0))
