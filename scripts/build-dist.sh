#!/usr/bin/env bash
# Builds the sdist and wheel of goex-client (clients/python) and goexd (the repo root) into OUTDIR
# (default dist/): `make dist`, and tests/e2e/test_dist.py into a temp dir. Each wheel is built from
# its sdist (python -m build), so a file missing from an sdist fails here, not on a user's machine.
# PYTHON: an interpreter with `build` and setuptools (the dev venv's); no build isolation, so no download.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
rm -f "$out"/goex_client-* "$out"/goexd-*
"$py" -m build --no-isolation --outdir "$out" clients/python >/dev/null
"$py" -m build --no-isolation --outdir "$out" . >/dev/null
ls "$out"
