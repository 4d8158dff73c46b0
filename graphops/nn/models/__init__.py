"""Models built from graphops layers."""

from graphops.nn.models.diff_pool_net import DiffPoolNet
from graphops.nn.models.eigen_gcn import EigenGCN
from graphops.nn.models.graph_unet import GraphUNet
from graphops.nn.models.graph_unet_classifier import GraphUNetClassifier
from graphops.nn.models.gtn import GTN
from graphops.nn.models.rgcn import RGCN
from graphops.nn.models.sign_classifier import SIGNClassifier

__all__ = [
    'DiffPoolNet',
    'EigenGCN',
    'GTN',
    'GraphUNet',
    'GraphUNetClassifier',
    'RGCN',
    'SIGNClassifier',
]
