#!/usr/bin/env bash
# Set up (idempotent) and run the main job.
# Today that is the most complete real job the package has: a papers100M-shaped SyntheticPapers
# graph (1M nodes) diffused with graphops' CSR/SpMM core, logistic regression on raw features vs
# on 3-hop diffused features, and a 10M-node generation timing. The ogbn-papers100M SIGN pipeline
# (precompute + train) replaces it when benchmarks/papers100m lands.
# Extra arguments go to the script, e.g. `bash scripts/main.sh --skip-generate`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$repo/scripts/env.sh" ogb,bench "${GRAPHOPS_SPARSE:-}"
cd "$repo"
mkdir -p outputs
exec python benchmarks/synthetic_papers.py --plot outputs/synthetic_papers.png "$@"
