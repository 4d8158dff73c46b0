"""ogbn-papers100M with SIGN: thin scripts over :mod:`graphops.apps.papers100m` (see README.md)."""
