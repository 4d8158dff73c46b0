import copy
import io
import pickle

import torch

from graphops.ops.cache import InputCache


def test_value_is_reused_for_the_same_inputs_only():
    a, b = torch.arange(5), torch.arange(5)
    cache = InputCache()
    calls = []

    def build():
        calls.append(1)
        return object()

    first = cache.get((a, None, 3), build)
    assert cache.get((a, None, 3), build) is first and len(calls) == 1
    assert cache.get((b, None, 3), build) is not first  # equal values, another tensor
    second = cache.value
    assert cache.get((b, None, 4), build) is not second  # another size
    third = cache.value
    b.add_(1)  # in place: a new version
    assert cache.lookup((b, None, 4)) is None
    assert cache.get((b, None, 4), build) is not third
    assert len(calls) == 4


def test_a_dead_tensor_never_matches_a_new_one():
    cache = InputCache()
    cache.store((torch.zeros(3),), 'plan')  # the tensor dies at once: held weakly
    assert cache.lookup((torch.zeros(3),)) is None


def test_tensor_and_non_tensor_entries_do_not_match_each_other():
    cache = InputCache()
    t = torch.zeros(2)
    cache.store((t,), 'plan')
    assert cache.lookup((None,)) is None
    assert cache.lookup((t, t)) is None
    cache.store((None,), 'plan')
    assert cache.lookup((t,)) is None


def test_clear_and_bool():
    cache = InputCache()
    assert not cache
    t = torch.zeros(2)
    cache.store((t,), [1, 2])
    assert cache and cache.lookup((t,)) == [1, 2]
    cache.clear()
    assert not cache and cache.lookup((t,)) is None


def test_pickle_and_deepcopy_carry_no_value():
    t = torch.zeros(2)
    cache = InputCache()
    cache.store((t,), torch.zeros(100_000))
    for restored in (pickle.loads(pickle.dumps(cache)), copy.deepcopy(cache)):
        assert isinstance(restored, InputCache) and not restored
        assert restored.lookup((t,)) is None
    buffer = io.BytesIO()
    torch.save(cache, buffer)
    assert buffer.tell() < 2048  # the 400 kB value is not saved
    assert repr(cache) == 'InputCache(Tensor)'
