"""Models built from graphops layers."""

from graphops.nn.models.graph_unet import GraphUNet
from graphops.nn.models.graph_unet_classifier import GraphUNetClassifier

__all__ = ['GraphUNet', 'GraphUNetClassifier']
