#!/usr/bin/env bash
# Fuzzes the request body and JSON Patch validators (fuzz/fuzz_targets/
# validate_body.rs) for a bounded time: a CI smoke run, not a campaign.
#
#   scripts/fuzz-smoke.sh [SECONDS]     (default 60; or FUZZ_SECONDS)
#
# Installs cargo-fuzz if missing. cargo-fuzz needs nightly-only compiler
# flags: the stable toolchain is used with RUSTC_BOOTSTRAP=1 (which unlocks
# them), or FUZZ_TOOLCHAIN=nightly.
# The sanitizer defaults to none (simgate forbids unsafe code; libFuzzer's
# coverage guidance still applies); FUZZ_SANITIZER=address turns ASan on.
# Findings go to fuzz/artifacts/validate_body/; the script fails if any.
set -euo pipefail

cd "$(dirname "$0")/.."

SECONDS_TO_RUN=${1:-${FUZZ_SECONDS:-60}}
SANITIZER=${FUZZ_SANITIZER:-none}
TARGET=validate_body

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

corpus=fuzz/corpus/$TARGET
mkdir -p "$corpus"
cp -n fuzz/seeds/$TARGET/* "$corpus"/ 2>/dev/null || true

# Building the instrumented target is the slow, toolchain-sensitive part: a
# build failure is reported loudly but fails the run only with
# FUZZ_REQUIRED=1; a finding (crash, timeout, leak) always fails it.
echo "fuzz-smoke: building $TARGET"
if ! cargo "${toolchain[@]}" fuzz build "${target_dir[@]}" --sanitizer "$SANITIZER" "$TARGET"; then
    echo "!!!!!! fuzz-smoke: could not build the fuzz target with this toolchain: fuzzing SKIPPED !!!!!!"
    if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then exit 1; fi
    exit 0
fi

echo "fuzz-smoke: $TARGET for ${SECONDS_TO_RUN}s (sanitizer: $SANITIZER)"
cargo "${toolchain[@]}" fuzz run "${target_dir[@]}" --sanitizer "$SANITIZER" "$TARGET" "$corpus" -- \
    -max_total_time="$SECONDS_TO_RUN" \
    -dict=fuzz/validate.dict \
    -max_len=4096 \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1
