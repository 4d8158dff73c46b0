"""Thin script: ``python -m benchmarks.papers100m.precompute`` is ``graphops-papers100m precompute``
(the pipeline lives in :mod:`graphops.apps.papers100m.precompute`)."""

import sys

from graphops.apps.papers100m.precompute import main

if __name__ == '__main__':
    main(sys.argv[1:])
