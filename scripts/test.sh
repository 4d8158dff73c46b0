#!/usr/bin/env bash
# Set up (idempotent) and run the default test suite: `bash scripts/test.sh [pytest args]`.
# With no arguments (what CI runs) it also builds the API docs with warnings as errors and runs the
# wheel test (build, install into a fresh venv outside the repository, smoke script).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/env.sh" test,ogb,bench,ray,docs "${GRAPHOPS_SPARSE:-sparse}"
cd "$repo"
ruff check .
ruff format --check .
pytest_args=(-q -p no:cacheprovider)
if [ "$#" -gt 0 ]; then
  # pytest's exit code 5 (no tests collected) is kept: it fails this script.
  exec python -m pytest "${pytest_args[@]}" "$@"
fi
# The API reference: a broken reference or a public name without an entry fails the build.
docs_out="$(mktemp -d)"
trap 'rm -rf "$docs_out"' EXIT
python -m sphinx -W -q -b html docs "$docs_out"
python -m pytest "${pytest_args[@]}"
# The gpu-marked tests with the device switched to CPU: their code paths cannot rot unseen where
# CI has no GPU (on a GPU machine, `pytest -m gpu` runs them on CUDA).
GRAPHOPS_TEST_DEVICE=cpu python -m pytest "${pytest_args[@]}" -m gpu tests
# Slow-marked, so not in the default selection; CI runs it here, explicitly.
python -m pytest "${pytest_args[@]}" -m slow tests/packaging/test_wheel.py
