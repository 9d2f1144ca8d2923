#!/usr/bin/env bash
# A separate venv for the decoder benchmark's peer, pyctcdecode (it pins numpy<2, which the
# project's .venv must not get). Idempotent. Usage: bash benchmarks/setup_pyctcdecode_env.sh [VENV]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-bench}"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import pyctcdecode, kenlm, numpy" 2>/dev/null; then
  echo "pyctcdecode env: $VENV ready"; exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
# kenlm-ex: prebuilt wheels of the kenlm Python module (pyctcdecode's LM backend)
"$VENV/bin/pip" install -q pyctcdecode==0.5.0 kenlm-ex "numpy<2"
"$VENV/bin/python" -c "import pyctcdecode, kenlm, numpy; print('pyctcdecode env:', '$VENV', 'numpy', numpy.__version__)"
