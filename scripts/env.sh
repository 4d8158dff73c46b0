#!/usr/bin/env bash
# Idempotent set-up shared by scripts/main.sh and scripts/test.sh.
# Usage: source scripts/env.sh [extras]     e.g. `source scripts/env.sh test,ogb,bench sparse`
# A second argument `sparse` also builds torch_scatter/torch_sparse from source (no wheels exist for
# this torch); built wheels are kept in $GRAPHOPS_WHEELHOUSE so later set-ups take seconds.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
want_sparse="${2:-}"
venv="${GRAPHOPS_VENV:-$repo/.venv}"
wheelhouse="${GRAPHOPS_WHEELHOUSE:-$HOME/.cache/graphops/wheels}"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3

if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
pip() { python -m pip --disable-pip-version-check -q "$@"; }

# Exactly this torch: any other version resolves to a multi-GB CUDA build.
python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null \
  || pip install torch==2.13.0

if [ "$want_sparse" = "sparse" ]; then
  mkdir -p "$wheelhouse"
  for pkg in torch_scatter torch_sparse; do
    if ! python -c "import $pkg" 2>/dev/null; then
      if ! ls "$wheelhouse"/"${pkg}"-*.whl >/dev/null 2>&1; then
        echo "graphops: building $pkg from source (several minutes, once per machine)" >&2
        MAX_JOBS="${MAX_JOBS:-$(nproc)}" pip wheel --no-build-isolation --no-deps -w "$wheelhouse" "$pkg"
      fi
      pip install --no-deps "$wheelhouse"/"${pkg}"-*.whl
    fi
  done
fi

# torch is pinned above; a constraint keeps every later resolve from replacing it.
constraint="$venv/torch-constraint.txt"
echo "torch==2.13.0" > "$constraint"
if [ -n "$extras" ]; then
  pip install -c "$constraint" -e "$repo[$extras]"
else
  pip install -c "$constraint" -e "$repo"
fi
