"""graphops.precompute"""

__all__: list[str] = []
