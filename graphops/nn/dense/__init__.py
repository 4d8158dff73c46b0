"""graphops.nn.dense"""

__all__: list[str] = []
