#!/usr/bin/env bash
# Set up (idempotent) and run the default test suite: `bash scripts/test.sh [pytest args]`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/env.sh" test,ogb,bench,ray,fast "${GRAPHOPS_SPARSE:-sparse}"
cd "$repo"
ruff check .
ruff format --check .
# pytest's exit code 5 (no tests collected) is kept: it fails this script.
exec python -m pytest -q -p no:cacheprovider "$@"
