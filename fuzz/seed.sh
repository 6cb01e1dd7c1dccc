#!/usr/bin/env bash
# Seeds each fuzz target's corpus (fuzz/corpus/TARGET) from the tests: the hostile
# files tests/bad_input.rs builds, in small versions, and the committed fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
UNITSCOPE_FUZZ_SEEDS="$PWD/fuzz/corpus" cargo test -q --test bad_input -- --ignored write_fuzz_seeds
for f in tests/fixtures/weights/*.pth; do
    case "$(head -c 2 "$f")" in
        PK) cp "$f" fuzz/corpus/pth_zip/ ;;
        *) cp "$f" fuzz/corpus/pth_legacy/ ;;
    esac
done
cp tests/fixtures/engine/plain_cnn.safetensors fuzz/corpus/safetensors/
