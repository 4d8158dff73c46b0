import pytest
import torch

from graphops.ops import memory, spgemm, to_csr
from graphops.testing import random_graph


@pytest.fixture
def budget():
    yield memory.set_memory_budget
    memory.set_memory_budget(None)


def test_budget_sources(monkeypatch, budget):
    monkeypatch.delenv('GRAPHOPS_MEMORY_BUDGET', raising=False)
    default = memory.memory_budget()
    assert 0 < default <= memory.available_bytes()
    monkeypatch.setenv('GRAPHOPS_MEMORY_BUDGET', '1.5G')
    assert memory.memory_budget() == int(1.5 * 2**30)
    monkeypatch.setenv('GRAPHOPS_MEMORY_BUDGET', '123456')
    assert memory.memory_budget() == 123456
    budget(1000)
    assert memory.memory_budget() == 1000  # the setter wins over the environment
    monkeypatch.setenv('GRAPHOPS_MEMORY_BUDGET', 'lots')
    budget(None)
    with pytest.raises(ValueError, match='GRAPHOPS_MEMORY_BUDGET must be a byte count'):
        memory.memory_budget()
    with pytest.raises(ValueError, match='positive int'):
        budget(0)


@pytest.mark.parametrize('backend', ['numba', 'torch'])
@pytest.mark.parametrize('topk', [None, 3])
def test_spgemm_over_budget_raises_before_it_allocates(backend, topk, budget):
    g = random_graph(400, 6000, seed=1, weighted=True, dtype=torch.float32)
    a = to_csr(g.edge_index, g.edge_weight, g.num_nodes)
    expected = spgemm(a, a, topk=topk, backend=backend)
    per_entry = 8 + 8 + 2 * 4
    rows = 2 * 8 * 401
    budget(expected.nnz * per_entry + rows)  # exactly enough: runs
    torch.testing.assert_close(
        spgemm(a, a, topk=topk, backend=backend).to_dense(), expected.to_dense()
    )
    budget(expected.nnz * per_entry + rows - 1)
    with pytest.raises(memory.ProductTooLargeError, match='node_index') as info:
        spgemm(a, a, topk=topk, backend=backend)
    assert isinstance(info.value, MemoryError)
    assert 'spgemm of a 400 x 400' in str(info.value) and 'over the budget of' in str(info.value)


def test_human_bytes():
    assert memory.human_bytes(3 * 2**30 // 2) == '1.50 GiB'
    assert memory.human_bytes(5 * 2**20) == '5.00 MiB'
    assert memory.human_bytes(2048) == '2.00 KiB'
    assert memory.human_bytes(12) == '12 bytes'
