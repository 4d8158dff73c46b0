"""graphops.nn.models"""

__all__: list[str] = []
