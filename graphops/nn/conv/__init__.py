"""Message-passing layers: R-GCN and the GTN meta-path convolution."""

from graphops.nn.conv.gt_conv import GTConv
from graphops.nn.conv.gt_layer import GTLayer
from graphops.nn.conv.rgcn_conv import RGCNConv

__all__ = ['GTConv', 'GTLayer', 'RGCNConv']
