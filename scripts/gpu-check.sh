#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU (CUDA 13 driver, the PyTorch venv of
# the device machines), run from the repository root. One run, about 6 minutes (the
# first, on an H200 with 5 repetitions, needed more than 7), so it can be rerun
# within a 15-minute lease:
#
#   here:  scripts/build-cuda.sh --pack gpu       # binaries + the peer's wheel, ~30 MB
#   there: scripts/gpu-check.sh gpu               # results in $OUT (or /tmp/gpu-check)
#
# 1. The reference tests on every engine, CUDA included: engine (logits, layers and
#    input gradients of every architecture against PyTorch), attribution (every
#    method against Captum and pytorch-grad-cam), devices (dataset search, feature
#    visualization, dissection against the CPU's kernels).
# 2. ResNet-50 at 224 px, batch 1 and 64, on the GPU: forward and forward + input
#    gradient against PyTorch (bench/pytorch_engine.py), Grad-CAM, SmoothGrad n=50 and
#    integrated gradients n=50 against Captum (bench/captum_attribution.py), with the
#    ratios printed (below 1: unitscope is faster).
#
# DEVICE=cpu runs the same steps on the CPU, batch 1, one repetition (the CUDA checks
# then say they were skipped): how the script is tried on a machine without a GPU.
set -uo pipefail

pack="${1:-gpu}"
device="${DEVICE:-cuda}"
batches="${BATCHES:-1,64}" reps=3 rounds=2
[[ $device == cpu ]] && batches="${BATCHES:-1}" reps=1 rounds=1
out="${OUT:-/tmp/gpu-check}"
bin="$(mktemp -d)"
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/summary.txt"; }

for f in "$pack"/*.xz; do
    name="$(basename "$f" .xz)"
    xz -dc "$f" >"$bin/$name" && chmod +x "$bin/$name"
done
[[ -x "$bin/unitscope" ]] || { echo "gpu-check.sh: no $pack/unitscope.xz (scripts/build-cuda.sh --pack $pack)" >&2; exit 2; }

# The CUDA libraries the binary links (libcudart.so.13, libcublas.so.13, libcurand.so.10)
# come with PyTorch's venv on the GPU machines.
venv="${TORCH_VENV:-/opt/torch/.venv}"
python="$venv/bin/python3"
[[ -x "$python" ]] || python=python3
site="$("$python" -c 'import site; print(site.getsitepackages()[0])')"
export LD_LIBRARY_PATH="$(echo "$site"/nvidia/*/lib | tr ' ' ':')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! "$python" -c 'import captum' 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --target "$bin/site" "$pack"/captum-*.whl
    export PYTHONPATH="$bin/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
# Float32 everywhere: cuDNN may otherwise convolve in TF32 (a 10-bit mantissa), on
# both sides. The unitscope binary sets this itself; its test binaries cannot.
export NVIDIA_TF32_OVERRIDE=0

trap 'rm -rf "$bin"' EXIT
log "$(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
"$bin/unitscope" info --device "$device" >/dev/null 2>"$out/device.txt" || { cat "$out/device.txt"; exit 1; }

# 1. Tests. The test binaries find the fixtures through CARGO_MANIFEST_DIR.
export CARGO_MANIFEST_DIR="$PWD"
status=0
for suite in engine_reference attribution_reference devices; do
    [[ -x "$bin/$suite" ]] || { log "$suite: missing from $pack"; status=1; continue; }
    # A hung GPU call must not eat the lease: each suite gets 150 s.
    if timeout 150 "$bin/$suite" --nocapture >"$out/$suite.log" 2>&1; then
        log "$suite: passed ($(grep -c '\[cuda\]\|^cuda:' "$out/$suite.log") CUDA checks printed)"
    else
        log "$suite: FAILED"; status=1
        grep -E "panicked|rel err .*[0-9]e-0[1-4]" "$out/$suite.log" | head -20 | tee -a "$out/summary.txt"
    fi
done
grep -h "skipping the CUDA checks" "$out"/*.log | sort -u | tee -a "$out/summary.txt"

# 2. Speed, both sides on the same device, alternating.
log "engine: ResNet-50 224 px, batch $batches, $device"
"$python" bench/pytorch_engine.py --device "$device" --binary "$bin/unitscope" \
    --models resnet50 --batch "$batches" --reps $reps --rounds $rounds 2>&1 | tee -a "$out/summary.txt" || status=1
log "attribution: ResNet-50 224 px, batch $batches, $device, passes of 64 inputs"
"$python" bench/captum_attribution.py --device "$device" --binary "$bin/unitscope" \
    --model resnet50 --batch "$batches" --methods grad-cam,smoothgrad,integrated-gradients \
    --pass-batch 64 --reps $reps --rounds $rounds 2>&1 | tee -a "$out/summary.txt" || status=1
exit $status
