import sys

from graphops.apps.papers100m.cli import main

sys.exit(main())
