#!/usr/bin/env bash
# Install llmi and everything it uses, offline defaults included.
#
#   bash scripts/install.sh           # system packages (if root), a .venv, llmi[all], the image library
#   bash scripts/install.sh --test    # ... plus what the tests need (chromium, pytest)
#
# Uses the active virtual environment if there is one, else creates ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

# 1. System packages: the sandbox (bubblewrap), a CJK font for chart labels, the offline image
#    library (public-domain clip art and Tux Paint stamps), and a browser for the page tests.
apt_packages="bubblewrap fonts-wqy-zenhei openclipart-svg tuxpaint-stamps-default libcairo2"
[ "$with_tests" = 1 ] && apt_packages="$apt_packages chromium"
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    missing=""
    for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        echo "installing system packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
else
    echo "note: not root or no apt-get; install these yourself for full function: $apt_packages" >&2
fi

# 2. The Python environment.
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -d .venv ] || python3 -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"  # the CPU build; a GPU machine can install its own first
extras="all"
[ "$with_tests" = 1 ] && extras="all,test"
python -m pip install -q -e ".[$extras]"
# Person segmentation for the offline editor's background changes. mediapipe 0.10.21 is the last
# release that bundles the model; it declares numpy<2 but works with numpy 2, hence --no-deps.
python -m pip install -q --no-deps "mediapipe==0.10.21" \
    && python -m pip install -q "protobuf>=4.25.3,<5" absl-py attrs flatbuffers \
    || echo "note: mediapipe unavailable; background edits use OpenCV GrabCut" >&2

# 3. The offline image library (indexes the system's clip art once; later runs are incremental).
llmi library add --defaults || echo "warning: the default image library could not be built" >&2

echo "llmi is installed in ${VIRTUAL_ENV}. Try: . ${VIRTUAL_ENV}/bin/activate && llmi generate \"Explain the water cycle\""
