#!/usr/bin/env bash
# Fuzzes, for a bounded time each (a CI smoke run, not a campaign):
# - the request body and JSON Patch validators (validate_body), SECONDS;
# - the strict path check and operation matcher (path_match), and JWT
#   header/claims parsing (jwt_parse), FUZZ_EXTRA_SECONDS each (default 15).
#
#   scripts/fuzz-smoke.sh [SECONDS]     (default 60; or FUZZ_SECONDS)
#
# Installs cargo-fuzz if missing. cargo-fuzz needs nightly-only compiler
# flags: the stable toolchain is used with RUSTC_BOOTSTRAP=1 (which unlocks
# them), or FUZZ_TOOLCHAIN=nightly.
# The sanitizer defaults to none (simgate forbids unsafe code; libFuzzer's
# coverage guidance still applies); FUZZ_SANITIZER=address turns ASan on.
# Findings go to fuzz/artifacts/<target>/; the script fails if any.
set -euo pipefail

cd "$(dirname "$0")/.."

SECONDS_TO_RUN=${1:-${FUZZ_SECONDS:-60}}
EXTRA_SECONDS=${FUZZ_EXTRA_SECONDS:-15}
SANITIZER=${FUZZ_SANITIZER:-none}
TARGETS=(validate_body path_match jwt_parse)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    if ! cargo install --locked cargo-fuzz; then
        echo "!!!!!! fuzz-smoke: cargo-fuzz could not be installed: fuzzing SKIPPED !!!!!!"
        if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then exit 1; fi
        exit 0
    fi
fi

# The same toolchain everywhere (CI has only stable): stable with
# RUSTC_BOOTSTRAP=1, unless FUZZ_TOOLCHAIN names another (e.g. nightly).
toolchain=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    toolchain=(+"$FUZZ_TOOLCHAIN")
else
    echo "fuzz-smoke: stable toolchain with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
fi

target_dir=()
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    target_dir=(--target-dir "$CARGO_TARGET_DIR/fuzz")
fi

# Building the instrumented targets is the slow, toolchain-sensitive part
# (one build for all of them): a build failure is reported loudly but fails
# the run only with FUZZ_REQUIRED=1; a finding (crash, timeout, leak) always
# fails it.
echo "fuzz-smoke: building ${TARGETS[*]}"
if ! cargo "${toolchain[@]}" fuzz build "${target_dir[@]}" --sanitizer "$SANITIZER"; then
    echo "!!!!!! fuzz-smoke: could not build the fuzz targets with this toolchain: fuzzing SKIPPED !!!!!!"
    if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then exit 1; fi
    exit 0
fi

for target in "${TARGETS[@]}"; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus"
    cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    seconds=$EXTRA_SECONDS
    dict=()
    if [ "$target" = validate_body ]; then
        seconds=$SECONDS_TO_RUN
        dict=(-dict=fuzz/validate.dict)
    fi
    echo "fuzz-smoke: $target for ${seconds}s (sanitizer: $SANITIZER)"
    cargo "${toolchain[@]}" fuzz run "${target_dir[@]}" --sanitizer "$SANITIZER" "$target" "$corpus" -- \
        -max_total_time="$seconds" \
        "${dict[@]}" \
        -max_len=4096 \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -print_final_stats=1
done
