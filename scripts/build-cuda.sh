#!/usr/bin/env bash
# Builds unitscope with CUDA (`--features cudnn`, or `cuda` when told) on a machine
# without a GPU, reproducibly, and prints the stripped binary's path. Idempotent: a
# second run reuses the CUDA tree and the target dir and rebuilds only what changed.
#
#   scripts/build-cuda.sh            # the binary
#   scripts/build-cuda.sh --tests    # also the test binaries that check every engine
#                                    # (engine and attribution references, devices)
#   scripts/build-cuda.sh --pack DIR # the binary and tests, stripped and xz-packed
#                                    # into DIR with the peer's wheel (captum 0.9.0),
#                                    # for scripts/gpu-check.sh on a GPU box
#   --features cuda                  # without cuDNN: Candle's im2col convolutions
#                                    # (default: cudnn; the binary then needs
#                                    # libcudnn.so.9 to start)
#
# CUDA 13.0 comes from PyPI wheels, pinned (nvcc 13.1 and newer emit PTX that a 13.0
# driver rejects). They form a CUDA_HOME-shaped tree nvidia/cu13/{bin,include,lib,nvvm};
# linking needs unversioned libX.so links and stubs for libcuda.so.1 (the driver's)
# and libcudnn.so.9, made here from cudarc's own lists of their
# functions and kept in lib/stubs: they are for the linker only and never travel.
#
# Environment: UNITSCOPE_CUDA_DIR (default ~/.cache/unitscope-cuda) holds the wheels'
# tree and, unless CARGO_TARGET_DIR says otherwise, the target dir: a cold build spends
# ~12-19 minutes compiling candle-kernels on 2 cores, so keep it between runs.
set -euo pipefail

tests=0
pack=""
features=cudnn
while [[ $# -gt 0 ]]; do
    case "$1" in
        --tests) tests=1 ;;
        --pack) pack="${2:?--pack needs a directory}"; tests=1; shift ;;
        --features) features="${2:?--features needs cuda or cudnn}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-cuda.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

root="$(cd "$(dirname "$0")/.." && pwd)"
base="${UNITSCOPE_CUDA_DIR:-$HOME/.cache/unitscope-cuda}"
wheels="$base/wheels"
export CUDA_HOME="$wheels/nvidia/cu13"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$base/target}"
export NVCC="$CUDA_HOME/bin/nvcc"
export CUDA_COMPUTE_CAP=90          # H100/H200; candle-kernels builds sm_90a
export CUDARC_CUDA_VERSION=13000    # no probing for a driver that is not here
export PATH="$CUDA_HOME/bin:$PATH"

pins=(
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
    nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
)
stamp="$wheels/.pins"
if [[ ! -x "$NVCC" || "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]]; then
    echo "build-cuda.sh: installing CUDA 13.0 from PyPI into $wheels" >&2
    rm -rf "$wheels"
    python3 -m pip install --quiet --no-deps --target "$wheels" "${pins[@]}"
    echo "${pins[*]}" >"$stamp"
fi

# nvcc looks for cicc under $CUDA_HOME/nvvm; the nvvm wheel may put it beside.
if [[ ! -e "$CUDA_HOME/nvvm/bin/cicc" ]]; then
    echo "build-cuda.sh: no nvvm/bin/cicc under $CUDA_HOME (nvidia-nvvm wheel layout changed?)" >&2
    exit 1
fi

# Unversioned names for the linker: libcublas.so.13 -> libcublas.so, ...
for lib in "$CUDA_HOME"/lib/lib*.so.*; do
    name="${lib##*/}"
    link="$CUDA_HOME/lib/${name%%.so.*}.so"
    [[ -e "$link" ]] || ln -s "$name" "$link"
done

# Link stubs for the libraries that come with the GPU machine: libcuda (the
# driver's) and libcudnn, every function cudarc binds, doing nothing.
stubs="$CUDA_HOME/lib/stubs"
cudarc=""
stub() { # name soname cudarc-module
    [[ -e "$stubs/lib$1.so" ]] && return
    [[ -n "$cudarc" ]] || cudarc="$(cd "$root" && cargo metadata --format-version 1 --features cuda 2>/dev/null |
        python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
    local sys="$(dirname "$cudarc")/src/$3/sys/mod.rs"
    mkdir -p "$stubs"
    grep -o 'fn cu[A-Za-z0-9_]*' "$sys" | sort -u | sed 's/^fn \(.*\)/void \1(void) {}/' >"$stubs/lib$1.c"
    cc -shared -fPIC -Wl,-soname,"$2" -o "$stubs/lib$1.so" "$stubs/lib$1.c"
}
stub cuda libcuda.so.1 driver
stub cudnn libcudnn.so.9 cudnn
export LIBRARY_PATH="$stubs:$CUDA_HOME/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$stubs -L native=$CUDA_HOME/lib"

cd "$root"
cargo build --release --features "$features" --bin unitscope >&2
bin="$CARGO_TARGET_DIR/release/unitscope"
strip -o "$bin.stripped" "$bin"

# Each line: a test's name and its binary.
suites=(engine_reference attribution_reference devices)
test_bins=()
if [[ $tests -eq 1 ]]; then
    cargo test --release --features "$features" "${suites[@]/#/--test=}" --no-run >&2
    mapfile -t test_bins < <(cargo test --release --features "$features" "${suites[@]/#/--test=}" \
        --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])')
    [[ ${#test_bins[@]} -eq ${#suites[@]} ]] || { echo "build-cuda.sh: the tests did not build" >&2; exit 1; }
fi

if [[ -n "$pack" ]]; then
    mkdir -p "$pack"
    xz -T0 -6 -c "$bin.stripped" >"$pack/unitscope.xz"
    for line in "${test_bins[@]}"; do
        read -r name path <<<"$line"
        strip -o "$pack/$name" "$path"
        xz -T0 -6 -f "$pack/$name"
    done
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$pack" captum==0.9.0
    du -sh "$pack"/* >&2
fi
echo "$bin.stripped"
