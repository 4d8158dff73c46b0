from graphops.apps.papers100m.cli import main

main()
