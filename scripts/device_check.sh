#!/usr/bin/env bash
# The GPU checks of the open issues as one prepared script, for a lent GPU machine (see the device tool's README).
#
#   bash scripts/device_check.sh fetch      # HERE (with pip access): the missing packages as wheels into .whl/
#   bash scripts/device_check.sh ops        # THERE: cli doctor --check-ops (builds the compiled ops, runs their
#                                           # self-check in fp32/fp16/bf16), the gpu-marked tests (the self-check's
#                                           # among them), benchmarks/ops.py fp32 + fp16 + bf16
#   bash scripts/device_check.sh speed      # THERE: benchmarks/psp.py and train_throughput.py on CUDA
#   bash scripts/device_check.sh all        # THERE: both, in one call: at most $BUDGET seconds (default 450)
# With the device tool: run(command="bash scripts/device_check.sh all", carry=[".whl"], timeout_s=480).
#
# On the device machine the wheels in .whl/ (carried) are installed into /tmp/site first. Logs go to $OUT (or
# device_out/): at most 7 files, within what the device tool brings back. A reference checkout of
# pytorch-CycleGAN-and-pix2pix at $REF (optional; carried) adds the
# reference's own train.py rows to the CycleGAN timing. Each stage has its own time limit, so one that hangs does not
# take the others with it, and no stage runs past the whole script's budget ($BUDGET s from the start, default 450:
# one device-tool call under 8 minutes); a stage that would start with under 20 s left is skipped and says so.
set -u -o pipefail
cd "$(dirname "$0")/.."
stage=${1:-all}
WHEELS=(albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
        typing-inspection==0.4.5 typing_extensions==4.16.0 simsimd==6.5.16 stringzilla==5.3.2 omegaconf==2.4.0
        kornia==0.9.0 kornia_rs==0.2.0)

if [ "$stage" = fetch ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    plat=()
    for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
        plat+=(--platform "${p}_x86_64")
    done
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
        -d .whl "${WHEELS[@]}"
fi

OUT=${OUT:-device_out}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
PY=${PY:-python3}

BUDGET=${BUDGET:-450}
run() {  # run NAME SECONDS COMMAND...: output to $OUT/NAME.txt and the console; the limit is cut to the budget left
    local name=$1 limit=$2 left=$((BUDGET - SECONDS))
    shift 2
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped, ${left} s of the ${BUDGET} s budget left" | tee "$OUT/$name.txt"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}

if [ "$stage" = ops ] || [ "$stage" = all ]; then
    # issue 22: the compiled ops' self-check on this device (the build goes into the cache the tests reuse)
    run doctor 240 $PY cli.py doctor --check-ops
    # issue 3: cuda-vs-ref parity (fp32/fp16), gradcheck/gradgradcheck, compile/export with the compiled ops
    run test_gpu 240 $PY -m pytest -q -m gpu -p no:cacheprovider tests --durations 5
    run ops_fp32 75 $PY benchmarks/ops.py
    run ops_fp16_bf16 120 bash -c "$PY benchmarks/ops.py --dtype float16; $PY benchmarks/ops.py --dtype bfloat16"
fi
if [ "$stage" = speed ] || [ "$stage" = all ]; then
    # issue 5: encode + decode images/s, fp32 vs bf16, cuda vs ref ops, batch 8
    run psp 120 $PY benchmarks/psp.py --device cuda --batch 8 --sizes 256 1024 --repeats 3
    # issue 4 (and 2): 256 px training steps, fp32 vs the fastest precision/layout, with the reference if carried
    ref=()
    [ -n "${REF:-}" ] && [ -f "$REF/train.py" ] && ref=(--reference-repo "$REF" --repeats 1)
    run train 240 $PY benchmarks/train_throughput.py --device cuda --warmup 5 --steps 20 --timeout 90 \
        --configs "cyclegan256-b1-fp32,cyclegan256-b1-bf16-cl,cyclegan256-b4-fp32,cyclegan256-b4-bf16-cl,\
256-b1-fp32,256-b1-bf16-cl" \
        --json "$OUT/train.json" "${ref[@]}"
fi
