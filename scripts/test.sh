#!/usr/bin/env bash
# Runs every test simgate has: formatting, lints, unit and end-to-end tests
# (including the official SailPoint Python SDKs as real clients) and a short
# fuzz smoke run. Safe to run on a fresh machine: it installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Python SDK venvs (sailpoint 1.x and 2.x)"
bash scripts/sdk-venv.sh

# Installs Debian package $2 when command $1 is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "== installing $1 (Debian package $2)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "$2" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }
}
need promtool prometheus         # tests/metrics.rs checks the scrape with it
need redis-server redis-server   # tests/rate_limit_redis.rs starts a real Redis
need openssl openssl             # tests/hostile_http.rs makes its TLS certificate

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
