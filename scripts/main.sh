#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the ogbn-papers100M SIGN pipeline (precompute + train)
# on its shipped default. With no dataset under --root it generates a papers100M-shaped synthetic
# graph in ogb's on-disk layout, so the real code path runs end to end.
# Extra arguments go to the pipeline, e.g. `bash scripts/main.sh --dataset ogbn-papers100M --root DIR`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/env.sh" ogb,bench "${GRAPHOPS_SPARSE:-}"
cd "$repo"
exec python -m benchmarks.papers100m.run "$@"
