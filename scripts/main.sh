#!/usr/bin/env bash
# Set up (idempotent) and run the main job.
# The main job is the ogbn-papers100M SIGN pipeline (precompute, then train MLP-only vs SIGN). With no
# arguments it runs on its shipped default, a papers100M-shaped SyntheticPapers graph in ogb's
# layout, in minutes on a CPU. Extra arguments go to the pipeline, e.g.
#   bash scripts/main.sh --dataset ogbn-papers100M --root /data/ogb --config sign_authors
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/env.sh" ogb,bench "${GRAPHOPS_SPARSE:-}"
cd "$repo"
exec graphops-papers100m run "$@"
