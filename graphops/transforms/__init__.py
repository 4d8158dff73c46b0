"""Transforms (``BaseTransform`` subclasses): SIGN operators, edge-type stacks, EigenPooling,
degree features."""

from graphops.transforms.adjacency import Adjacency
from graphops.transforms.degree_features import DegreeFeatures
from graphops.transforms.eigen_pooling import EigenPooling
from graphops.transforms.operator import SIGNOperator
from graphops.transforms.ppr import PPR
from graphops.transforms.sign import SIGN
from graphops.transforms.to_edge_type_stack import ToEdgeTypeStack, to_edge_type_stack
from graphops.transforms.triangle import Triangle

__all__ = [
    'PPR',
    'SIGN',
    'Adjacency',
    'DegreeFeatures',
    'EigenPooling',
    'SIGNOperator',
    'ToEdgeTypeStack',
    'Triangle',
    'to_edge_type_stack',
]
