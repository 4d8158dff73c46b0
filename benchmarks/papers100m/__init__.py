"""ogbn-papers100M with SIGN: precompute.py, train.py and run.py (see README.md)."""
