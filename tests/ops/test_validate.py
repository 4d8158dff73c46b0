import pytest
import torch

from graphops.ops.validate import check_float, check_index, check_index_or_mask


def test_mask_becomes_ids_in_increasing_order():
    mask = torch.tensor([False, True, False, True, True])
    assert check_index_or_mask(mask, 'rows', size=5).tolist() == [1, 3, 4]
    assert check_index_or_mask(mask, 'rows', size=5).dtype == torch.long


def test_ids_pass_through_as_long():
    out = check_index_or_mask(torch.tensor([4, 0], dtype=torch.int32), 'rows', size=5)
    assert out.tolist() == [4, 0] and out.dtype == torch.long


@pytest.mark.parametrize(
    'mask', [torch.ones(4, dtype=torch.bool), torch.ones(5, 1, dtype=torch.bool)]
)
def test_mask_of_wrong_shape_is_refused(mask):
    with pytest.raises(ValueError, match=r'rows is a bool mask .*num_nodes = 5'):
        check_index_or_mask(mask, 'rows', size=5)


def test_out_of_range_ids_are_refused():
    with pytest.raises(ValueError, match='rows contains index 5'):
        check_index_or_mask(torch.tensor([5]), 'rows', size=5)


def test_index_only_checks_name_the_mask_conversion():
    with pytest.raises(TypeError, match=r'perm\.nonzero\(\)\.view\(-1\)'):
        check_index(torch.ones(3, dtype=torch.bool), 'perm')


# --- debug mode and checks that must not read values back ----------------------------------------


def test_debug_context_sets_and_restores_the_mode():
    import graphops

    assert not graphops.is_debug_enabled()
    with graphops.debug():
        assert graphops.is_debug_enabled()
        with graphops.debug(False):
            assert not graphops.is_debug_enabled()
        assert graphops.is_debug_enabled()
    assert not graphops.is_debug_enabled()
    graphops.set_debug(True)
    try:
        assert graphops.is_debug_enabled()
    finally:
        graphops.set_debug(False)
    with pytest.raises(TypeError, match='mode must be a bool'):
        graphops.debug('yes')


def _checked(index, x):
    check_index(index, 'index', upper=4, upper_name='num_nodes')
    check_float(x, 'x')
    return x[index]


def test_value_checks_trace_without_a_graph_break_and_still_fail():
    index, x = torch.tensor([0, 3, 1]), torch.randn(4, 2)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(_checked)(index, x)
    assert explained.graph_break_count == 0
    compiled = torch.compile(_checked, backend='aot_eager', fullgraph=True)
    assert torch.equal(compiled(index, x), x[index])
    with pytest.raises(RuntimeError, match='index must hold indices >= 0 and < num_nodes'):
        compiled(torch.tensor([0, 4, 1]), x)
    with pytest.raises(RuntimeError, match='index must hold indices >= 0'):
        compiled(torch.tensor([0, -1, 1]), x)
    with pytest.raises(RuntimeError, match='x contains NaN or Inf'):
        compiled(index, torch.full((4, 2), float('nan')))


def test_debug_mode_gives_the_exact_eager_checks_under_compile():
    import graphops

    torch._dynamo.reset()
    with graphops.debug():
        compiled = torch.compile(_checked, backend='aot_eager')
        with pytest.raises(ValueError, match='contains index 4, out of range for num_nodes = 4'):
            compiled(torch.tensor([0, 4, 1]), torch.randn(4, 2))
    torch._dynamo.reset()


def test_eager_cpu_messages_are_unchanged():
    with pytest.raises(ValueError, match='contains index 4, out of range for num_nodes = 4'):
        _checked(torch.tensor([0, 4, 1]), torch.randn(4, 2))
    with pytest.raises(ValueError, match='contains a negative index'):
        _checked(torch.tensor([0, -1, 1]), torch.randn(4, 2))
    with pytest.raises(ValueError, match='x contains NaN or Inf'):
        _checked(torch.tensor([0]), torch.full((4, 2), float('inf')))


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
def test_checks_on_device(device):
    from graphops.ops.validate import check_same_device, debug, defers_value_checks

    ids = torch.tensor([3, 0, 4])
    mask = torch.tensor([True, False, False, True, True])
    on_device = check_index_or_mask(mask.to(device), 'node_index', size=5)
    assert on_device.device.type == device.type and on_device.tolist() == [0, 3, 4]
    assert check_index(ids.to(device), 'perm', upper=5).device.type == device.type
    # off the CPU, value checks are asynchronous assertions: no read-back, no sync
    assert defers_value_checks(ids.to(device)) == (device.type != 'cpu')
    with debug(True):  # debug mode reads back on every device and raises at once
        assert not defers_value_checks(ids.to(device))
        with pytest.raises(ValueError, match='contains index 7'):
            check_index(torch.tensor([7]).to(device), 'perm', upper=5)
    x = torch.zeros(2, device=device)
    assert check_same_device([('x', x), ('w', None), ('y', x)]) == x.device
    if device.type != 'cpu':
        with pytest.raises(ValueError, match='move them to one device'):
            check_same_device([('x', x), ('edge_index', ids)])


def test_defers_value_checks_on_cpu_eager_only_in_compile_or_off_cpu():
    from graphops import debug
    from graphops.ops.validate import defers_value_checks

    assert not defers_value_checks(torch.zeros(2))
    with debug():
        assert not defers_value_checks(torch.zeros(2))
    assert defers_value_checks(torch.zeros(2, device='meta'))


def test_check_condition_raises_on_cpu_and_defers_under_compile():
    import graphops
    from graphops.ops.validate import check_condition

    check_condition(torch.tensor(True), 'fine')
    with pytest.raises(ValueError, match='the graph differs'):
        check_condition(torch.tensor(False), 'the graph differs')

    def guarded(x):
        check_condition((x > 0).all(), 'x must be positive')
        return x * 2

    explanation = torch._dynamo.explain(guarded)(torch.ones(3))
    assert explanation.graph_break_count == 0  # an assertion in the graph, no read-back
    with graphops.debug():  # debug mode reads the value back, even under compile
        explanation = torch._dynamo.explain(guarded)(torch.ones(3))
    assert explanation.graph_break_count >= 1
