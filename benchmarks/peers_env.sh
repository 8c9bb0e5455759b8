#!/usr/bin/env bash
# Build an optional peer venv: the project's lock, then the pinned peers of one requirements file (and exactly
# their extra dependencies) with --no-deps, so that no locked package (torch above all) is replaced; then import
# the peers as a check.
# Usage: benchmarks/peers_env.sh VENV_DIR REQUIREMENTS_FILE "module[, module ...]"
#        (run from the repository root; needs .venv/bin/uv from `make install`)
# Used by `make peers14-env` (mk/peers_quant.mk) and `make peers16-env` (mk/peers_multiplicity.mk).
set -euo pipefail
if [ $# -ne 3 ]; then echo "usage: $0 VENV_DIR REQUIREMENTS_FILE 'mod1, mod2'" >&2; exit 2; fi
VENV="$1"; REQS="$2"; MODULES="$3"
[ -f "$REQS" ] || { echo "no such requirements file: $REQS" >&2; exit 2; }
UV=.venv/bin/uv
FIND_LINKS=()
if [ -d /opt/wheels ]; then FIND_LINKS=(--find-links /opt/wheels); fi
[ -x "$VENV/bin/python" ] || "$UV" venv -q --python 3.11 "$VENV"
"$UV" pip install -q --python "$VENV/bin/python" "${FIND_LINKS[@]}" -r requirements.lock
"$UV" pip install -q --python "$VENV/bin/python" --no-deps -r "$REQS"
"$VENV/bin/python" -c "import $MODULES, torch; print('$VENV ok, torch', torch.__version__)"
