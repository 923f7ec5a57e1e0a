#!/usr/bin/env bash
# The Python virtualenv the real-client tests run the official Kubernetes
# Python client from (tests/api_python.rs). Idempotent: when the venv
# already holds the pinned requirements it does nothing (well under a
# second). Sourced by scripts/setup.sh; exports TMC_PYTHON.
set -euo pipefail

# Pinned: the newest release PyPI served when the test was written.
TMC_PY_REQUIREMENTS="kubernetes==37.0.2"
TMC_PYENV="${TMC_PYENV:-$HOME/.cache/tmc/pyenv}"

if [ "$(cat "$TMC_PYENV/.tmc-requirements" 2>/dev/null)" != "$TMC_PY_REQUIREMENTS" ]; then
  echo "pyenv: installing $TMC_PY_REQUIREMENTS into $TMC_PYENV" >&2
  [ -x "$TMC_PYENV/bin/python" ] || python3 -m venv "$TMC_PYENV"
  "$TMC_PYENV/bin/pip" install --quiet --disable-pip-version-check $TMC_PY_REQUIREMENTS
  echo "$TMC_PY_REQUIREMENTS" > "$TMC_PYENV/.tmc-requirements"
fi
export TMC_PYTHON="$TMC_PYENV/bin/python"
