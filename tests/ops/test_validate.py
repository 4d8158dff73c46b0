import pytest
import torch

from graphops.ops.validate import check_index, check_index_or_mask


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
