"""Thin script: ``python -m benchmarks.papers100m.train`` is ``graphops-papers100m train``
(the pipeline lives in :mod:`graphops.apps.papers100m.train`)."""

import sys

from graphops.apps.papers100m.train import main

if __name__ == '__main__':
    main(sys.argv[1:])
