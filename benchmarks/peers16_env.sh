#!/usr/bin/env bash
# Build the optional peer venv for issue 16: the project's lock, then the pinned peers (and exactly their extra
# dependencies) with --no-deps, so that no locked package (torch above all) is replaced.
# Usage: benchmarks/peers16_env.sh [VENV_DIR]   (run from the repository root; needs .venv/bin/uv from `make install`)
set -euo pipefail
VENV="${1:-.venv-peers16}"
UV=.venv/bin/uv
FIND_LINKS=()
if [ -d /opt/wheels ]; then FIND_LINKS=(--find-links /opt/wheels); fi
[ -x "$VENV/bin/python" ] || "$UV" venv -q --python 3.11 "$VENV"
"$UV" pip install -q --python "$VENV/bin/python" "${FIND_LINKS[@]}" -r requirements.lock
"$UV" pip install -q --python "$VENV/bin/python" --no-deps -r benchmarks/peers16-requirements.txt
"$VENV/bin/python" -c "import netcal, girth, py_irt.training, multiplicity, rashomon, treefarms, torch; print('peers16 env ok, torch', torch.__version__)"
