#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real clients the end-to-end tests drive, then
# rustfmt, clippy (warnings are errors) and every test of the workspace. The test summary is the
# last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-test-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doctests.
    cargo test --workspace --doc --quiet
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
