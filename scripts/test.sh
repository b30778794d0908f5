#!/usr/bin/env bash
# Runs every test simgate has: formatting, lints, unit and end-to-end tests
# (including the official SailPoint Python SDKs as real clients) and a short
# fuzz smoke run. Safe to run on a fresh machine: it installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Python SDK venvs (sailpoint 1.x and 2.x)"
bash scripts/sdk-venv.sh

# tests/metrics.rs checks the scrape with Debian's promtool (package prometheus).
if ! command -v promtool >/dev/null 2>&1; then
  echo "== installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq prometheus >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
fi

# tests/rate_limit_redis.rs starts a real Redis (Debian package redis-server).
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian package redis-server)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq redis-server >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --locked --no-fail-fast

if [[ -x scripts/fuzz-smoke.sh ]]; then
  echo "== fuzz smoke (bounded)"
  bash scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-30}"
fi
