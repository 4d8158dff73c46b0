"""Thin script: ``python -m benchmarks.papers100m.run`` is ``graphops-papers100m run``
(the pipeline lives in :mod:`graphops.apps.papers100m.run`)."""

import sys

from graphops.apps.papers100m.run import main

if __name__ == '__main__':
    main(sys.argv[1:])
