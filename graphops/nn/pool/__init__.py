"""graphops.nn.pool"""

__all__: list[str] = []
