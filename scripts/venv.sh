#!/usr/bin/env bash
# Prints the path of a virtual environment with rnnkit and its dev extra installed, creating it
# on first use. It lives outside the clone, keyed on pyproject.toml's contents, so repeated runs
# are fast and a changed dependency list gets a fresh environment.
set -euo pipefail
cd "$(dirname "$0")/.."
key=$(python3 -c 'import hashlib;print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest()[:16])')
venv="${RNNKIT_VENV_CACHE:-$HOME/.cache/rnnkit-venvs}/$key"
if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -e ".[dev]" >&2
    touch "$venv/.complete"
else
    # The environment is shared between clones: point its editable install at this one.
    "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e . >&2
fi
echo "$venv"
