r"""The relational (R-GCN) engine:

.. math::
    \mathbf{y}_i = \sum_{r \in \mathcal{R}} \sum_{j \in \mathcal{N}_r(i)} c_{i,r}\,
    \mathbf{W}_r \mathbf{x}_j

computed without a Python loop over relations. ``graph`` groups the edges once; ``plans`` lays
the (target, relation) pairs out in tiles; ``cost`` holds the cost model and
:func:`choose_strategy`, the one place a strategy is picked (override it with ``strategy=``);
``matmul`` runs the eager strategies on :func:`graphops.ops.spmm`; ``static`` is the same sum in
ops of static shape for ``torch.compile``. With a basis decomposition
:math:`\mathbf{W}_r = \sum_b a_{rb} \mathbf{V}_b` neither the ``[R, in, out]`` weight tensor nor
its gradient is ever formed on the eager paths.

Inputs are validated by the caller (the layer) through :mod:`graphops.ops.validate`; the
products here re-check only shapes.
"""

from graphops.ops.relational.cost import STRATEGIES, choose_strategy, pair_layout, strategy_costs
from graphops.ops.relational.graph import RelationalGraph
from graphops.ops.relational.matmul import AGGRS, relational_matmul, zeros_touching
from graphops.ops.relational.plans import PairPlan, pair_plan, pairs_matmul, tile_layout
from graphops.ops.relational.static import (
    StaticRelationalPlan,
    dense_relational_matmul,
    static_plan,
    static_relational_matmul,
)

__all__ = [
    'AGGRS',
    'STRATEGIES',
    'PairPlan',
    'RelationalGraph',
    'StaticRelationalPlan',
    'choose_strategy',
    'dense_relational_matmul',
    'pair_layout',
    'pair_plan',
    'pairs_matmul',
    'relational_matmul',
    'static_plan',
    'static_relational_matmul',
    'strategy_costs',
    'tile_layout',
    'zeros_touching',
]
