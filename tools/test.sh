#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real clients the end-to-end tests drive, then
# rustfmt, clippy (warnings are errors) and every test of the workspace. The last line printed is
# the test summary.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-test-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> tests"
log="$(mktemp -t berth-tests.XXXXXX)"
trap 'rm -f "$log"' EXIT
status=0
if cargo nextest --version >/dev/null 2>&1; then
    # nextest does not run doctests.
    cargo test --workspace --doc --quiet
    cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
    summary="$(grep -E '^ *Summary \[' "$log" | tail -n 1 | sed 's/^ *//')"
else
    cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
    summary="$(awk '/^test result:/ { p += $4; f += $6; i += $8 }
        END { printf "Summary: %d passed, %d failed, %d ignored\n", p, f, i }' "$log")"
fi
# Failure details scroll past; end with the one line that says how the run went.
echo "${summary:-Summary: no test summary found (the test build failed?)}"
exit "$status"
