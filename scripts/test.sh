#!/usr/bin/env bash
# The README's test command: installs rnnkit with its dev extra into a cached virtual
# environment (see scripts/venv.sh) and runs the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(bash scripts/venv.sh)
exec "$venv/bin/python" -m pytest "$@"
