"""graphops.transforms"""

__all__: list[str] = []
