#!/usr/bin/env bash
# Installs everything the berth test suite drives on a fresh Debian bookworm machine:
# the real registry clients (skopeo, podman, buildah, containerd, oras-py, helm-sdkpy), nginx,
# systemd-analyze (checks the shipped unit),
# openssl, umoci and the reference registry. Idempotent: a second run only checks.
# Quiet on success; on failure prints the failing step and its output, and exits non-zero.
#
# Environment:
#   BERTH_TEST_VENV  Python >= 3.12 venv holding oras and helm-sdkpy (default /opt/berth-test-venv)
#   BERTH_PYTHON312  interpreter to build that venv from (default: pyenv 3.12.x, then python3.12)
set -euo pipefail

VENV="${BERTH_TEST_VENV:-/opt/berth-test-venv}"
LOG="$(mktemp -t berth-deps.XXXXXX)"
trap 'rm -f "$LOG"' EXIT

APT_PACKAGES=(
    skopeo podman buildah containerd runc umoci nginx openssl curl jq busybox-static
    docker-registry wrk python3 python3-pip ca-certificates zstd gzip systemd
)
PY_PACKAGES=(oras helm-sdkpy)

die() {
    echo "install-test-deps: $*" >&2
    if [ -s "$LOG" ]; then
        echo "---- output of the failing step ----" >&2
        tail -n 60 "$LOG" >&2
    fi
    exit 1
}

# Runs a step with its output captured; shows the output only if the step fails.
step() {
    local what="$1"
    shift
    : >"$LOG"
    "$@" >"$LOG" 2>&1 || die "failed: $what ($*)"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

install_apt() {
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y --no-install-recommends "${missing[@]}" >"$LOG" 2>&1; then
        step "apt-get update" as_root apt-get update
        step "apt-get install ${missing[*]}" as_root apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

# Debian's docker-registry, nginx and containerd packages may start services on install; the tests
# start their own private instances on free ports, so a packaged daemon is only in the way.
stop_packaged_services() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now docker-registry nginx containerd >/dev/null 2>&1 || true
    fi
}

is_python312() {
    [ -n "$1" ] && [ -x "$1" ] &&
        "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null
}

find_python312() {
    if [ -n "${BERTH_PYTHON312:-}" ]; then
        is_python312 "$BERTH_PYTHON312" || die "BERTH_PYTHON312=$BERTH_PYTHON312 is not Python >= 3.12"
        echo "$BERTH_PYTHON312"
        return 0
    fi
    local c
    for c in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 \
        "$(command -v python3.13 || true)" "$(command -v python3.12 || true)"; do
        if is_python312 "$c"; then
            echo "$c"
            return 0
        fi
    done
    die "no Python >= 3.12 found (helm-sdkpy needs it): tried ~/.pyenv/versions/3.12*," \
        "python3.13, python3.12; set BERTH_PYTHON312=/path/to/python3.12"
}

install_python() {
    # oras-py for the default interpreter too, for trying things by hand. The tests use the venv,
    # so an interpreter that refuses user installs (PEP 668) only earns a note.
    if ! python3 -c 'import oras' >/dev/null 2>&1; then
        python3 -m pip install --quiet --disable-pip-version-check oras >"$LOG" 2>&1 ||
            echo "install-test-deps: note: python3 -m pip install oras failed; the venv has it" >&2
    fi
    if [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import oras.provider, helm_sdkpy' >/dev/null 2>&1; then
        return 0
    fi
    local py
    py="$(find_python312)" || exit 1
    step "create venv $VENV with $py" "$py" -m venv "$VENV"
    step "pip install ${PY_PACKAGES[*]}" "$VENV/bin/python" -m pip install --quiet \
        --disable-pip-version-check "${PY_PACKAGES[@]}"
    step "import oras and helm_sdkpy" "$VENV/bin/python" -c 'import oras.provider, helm_sdkpy'
}

install_nextest() {
    command -v cargo-nextest >/dev/null 2>&1 && return 0
    command -v cargo >/dev/null 2>&1 || die "cargo is not installed"
    step "cargo install cargo-nextest" cargo install --locked --quiet cargo-nextest
}

check_tools() {
    local t
    for t in skopeo podman buildah containerd ctr runc umoci nginx openssl curl jq busybox \
        docker-registry zstd gzip; do
        command -v "$t" >/dev/null 2>&1 || die "$t is still missing after installation"
    done
    [ -x /bin/busybox ] || die "/bin/busybox (busybox-static) is missing"
}

install_apt
stop_packaged_services
install_python
install_nextest
check_tools
