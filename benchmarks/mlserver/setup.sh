#!/usr/bin/env bash
# Installs MLServer into its own virtual environment, benchmarks/.venv-mlserver (gitignored).
# MLServer pins its own protobuf and grpcio; keeping it out of .venv keeps leadgw's pins intact.
# Usage: benchmarks/mlserver/setup.sh [python]   (default: python3.11, else python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${MLSERVER_VENV:-$(cd "$here/.." && pwd)/.venv-mlserver}"
python="${1:-$(command -v python3.11 || command -v python3)}"
mlserver_spec="${MLSERVER_SPEC:-mlserver==1.7.1}"

if [[ -x "$venv/bin/mlserver" && -f "$venv/.installed" ]]; then
    echo "MLServer already installed in $venv"
    exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "$mlserver_spec" "onnxruntime>=1.20" "numpy>=1.26"
"$venv/bin/mlserver" --help >/dev/null
touch "$venv/.installed"
echo "MLServer $("$venv/bin/python" -c 'import mlserver; print(mlserver.__version__)') installed in $venv"
