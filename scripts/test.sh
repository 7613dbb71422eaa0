#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit tests, and the integration and
# end-to-end tests against a real broker and PostgreSQL (started by scripts/services.sh
# unless KAFKA_BROKERS / DATABASE_URL point elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamwatch/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "C libraries the build links (OpenSSL)"
bash scripts/build-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "local services"
eval "$(scripts/services.sh up)"
export KAFKA_BROKERS DATABASE_URL

step "build the four binaries (the end-to-end test runs them as processes)"
cargo build --workspace --bins --locked

step "headless Chromium (Debian's package) for the report test"
CHROMIUM="$(bash scripts/chromium.sh)"
export CHROMIUM

step "cargo test"
cargo test --workspace --locked --no-fail-fast
