"""Transforms (``BaseTransform`` subclasses): SIGN operators, edge-type stacks."""

from graphops.transforms.to_edge_type_stack import ToEdgeTypeStack, to_edge_type_stack

__all__ = ['ToEdgeTypeStack', 'to_edge_type_stack']
