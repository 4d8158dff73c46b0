"""The ogbn-papers100M SIGN pipeline: :mod:`.precompute`, then :mod:`.train`; :mod:`.run` chains
them. Run it as ``graphops-papers100m precompute|train|run [options]`` (or
``python -m graphops.apps.papers100m ...``); the configs are in ``configs/``
(see :mod:`.config`).
"""

__all__ = ['cli', 'config', 'precompute', 'run', 'train']
