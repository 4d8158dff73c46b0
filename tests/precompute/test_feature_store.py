import json

import numpy as np
import pytest
import torch

from graphops.precompute.feature_store import (
    FeatureStore,
    FeatureStoreCorruptError,
    FeatureStoreError,
    FeatureStoreMismatchError,
)

GROUPS = [
    {'name': 'input', 'params': {}, 'keys': ['x']},
    {'name': 'Op', 'params': {}, 'keys': ['a1', 'a2']},
]


def make(path, dtype=torch.float32, identity=None, **kwargs):
    return FeatureStore.create(
        path,
        identity=identity or {'graph': 'g'},
        groups=GROUPS,
        num_rows=5,
        num_features=4,
        storage_dtype=dtype,
        slices=[(0, 2), (2, 4)],
        **kwargs,
    )


def fill(store, dtype=np.float32):
    for group, keys in ((0, ['x']), (1, ['a1', 'a2'])):
        for s, (a, b) in enumerate(store.slices):
            store.write(group, s, {k: np.full((5, b - a), s + len(k), dtype=dtype) for k in keys})


def test_store_roundtrip(tmp_path):
    store = make(tmp_path / 's', rows=torch.tensor([4, 0, 2, 1, 3]))
    assert store.pending(1) == [0, 1]
    fill(store)
    store.finalize()
    reopened = FeatureStore(tmp_path / 's')
    assert reopened.complete and reopened.keys() == ['x', 'a1', 'a2']
    assert torch.equal(reopened['a2'], torch.tensor([[2.0, 2, 3, 3]]).repeat(5, 1))
    assert reopened.rows.tolist() == [4, 0, 2, 1, 3]
    assert list(reopened.load()) == ['x', 'a1', 'a2'] and len(reopened) == 3 and 'a1' in reopened
    assert np.load(tmp_path / 's' / 'a1.npy').shape == (5, 4)  # plain .npy files
    assert repr(reopened).startswith("FeatureStore('")


def test_store_bfloat16_roundtrip(tmp_path):
    store = make(tmp_path / 's', dtype=torch.bfloat16)
    value = torch.tensor(1.5, dtype=torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    for group, keys in ((0, ['x']), (1, ['a1', 'a2'])):
        for s in range(2):
            store.write(group, s, {k: np.full((5, 2), value, dtype=np.uint16) for k in keys})
    store.finalize()
    out = FeatureStore(tmp_path / 's')['a1']
    assert out.dtype == torch.bfloat16 and bool((out == 1.5).all())


def test_flipped_byte_is_detected(tmp_path):
    store = make(tmp_path / 's')
    fill(store)
    store.finalize()
    file = tmp_path / 's' / 'a1.npy'
    raw = bytearray(file.read_bytes())
    raw[-3] ^= 0x10
    file.write_bytes(bytes(raw))
    with pytest.raises(FeatureStoreCorruptError, match='a1.npy does not match'):
        FeatureStore(tmp_path / 's')
    FeatureStore(tmp_path / 's', verify=False)  # opening without checks still works


def test_flipped_byte_in_done_slice_of_incomplete_store(tmp_path):
    store = make(tmp_path / 's')
    store.write(1, 0, {k: np.ones((5, 2), np.float32) for k in ['a1', 'a2']})
    array = np.load(tmp_path / 's' / '.a2.s0.npy', mmap_mode='r+')  # the unit's slice file
    array[3, 1] = 7.0
    array.flush()
    del array
    with pytest.raises(FeatureStoreCorruptError, match=r"columns \[0, 2\) of 'a2'"):
        FeatureStore(tmp_path / 's')
    with pytest.raises(FeatureStoreCorruptError):
        make(tmp_path / 's')  # resuming checks the done slices too
    (tmp_path / 's' / '.a2.s0.npy').unlink()
    with pytest.raises(FeatureStoreCorruptError, match='missing'):
        FeatureStore(tmp_path / 's')


def test_slices_wait_in_their_own_files_until_finalize(tmp_path):
    store = make(tmp_path / 's')
    fill(store)
    assert sorted(p.name for p in (tmp_path / 's').glob('.*.npy')) == [
        f'.{k}.s{s}.npy' for k in ('a1', 'a2', 'x') for s in (0, 1)
    ]
    assert not np.load(tmp_path / 's' / 'a1.npy').any()  # written once, by finalize
    store.finalize()
    assert not list((tmp_path / 's').glob('.*.npy'))
    np.testing.assert_array_equal(
        np.load(tmp_path / 's' / 'a1.npy'), np.array([[2.0, 2, 3, 3]] * 5, np.float32)
    )


def test_resume_keeps_done_slices_and_mismatch_is_reported(tmp_path):
    store = make(tmp_path / 's')
    store.write(1, 1, {k: np.ones((5, 2), np.float32) for k in ['a1', 'a2']})
    again = make(tmp_path / 's')
    assert again.pending(1) == [0] and again.pending(0) == [0, 1]
    with pytest.raises(FeatureStoreMismatchError, match="graph: stored 'g', now 'h'"):
        make(tmp_path / 's', identity={'graph': 'h'})
    with pytest.raises(FeatureStoreMismatchError, match='storage_dtype'):
        make(tmp_path / 's', dtype=torch.float16)
    fresh = make(tmp_path / 's', identity={'graph': 'h'}, overwrite=True)
    assert fresh.pending(1) == [0, 1]
    manifest = json.loads((tmp_path / 's' / 'manifest.json').read_text())
    assert manifest['identity'] == {'graph': 'h'}
    assert not list((tmp_path / 's').glob('.*tmp*'))  # no temporary file left behind


def test_store_bad_use(tmp_path):
    with pytest.raises(FeatureStoreError, match='no FeatureStore'):
        FeatureStore(tmp_path)
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'notes.txt').write_text('mine')
    with pytest.raises(FeatureStoreError, match='not empty'):
        make(tmp_path / 'full')
    store = make(tmp_path / 's')
    with pytest.raises(FeatureStoreError, match='incomplete'):
        store['a1']
    with pytest.raises(FeatureStoreError, match='not done'):
        store.finalize()
    with pytest.raises(ValueError, match='must be'):
        store.write(1, 0, {k: np.ones((5, 3), np.float32) for k in ['a1', 'a2']})
    with pytest.raises(ValueError, match='writes keys'):
        store.write(1, 0, {'a1': np.ones((5, 2), np.float32)})
    with pytest.raises(KeyError, match='not in this store'):
        store.array('zz')
    with pytest.raises(TypeError, match='storage_dtype must be one of'):
        make(tmp_path / 't', dtype=torch.int8)
    (tmp_path / 's' / 'manifest.json').write_text('{broken')
    with pytest.raises(FeatureStoreCorruptError, match='not valid JSON'):
        FeatureStore(tmp_path / 's')


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32])
def test_store_tensors_move_to_device(tmp_path, device, dtype):
    store = make(tmp_path / 's', dtype=dtype)
    value = torch.tensor(1.5, dtype=dtype)
    raw = value.view(torch.int16).numpy().view(np.uint16) if dtype == torch.bfloat16 else value
    for group, keys in ((0, ['x']), (1, ['a1', 'a2'])):
        for s in range(2):
            store.write(
                group, s, {k: np.full((5, 2), raw, dtype=store.array(k).dtype) for k in keys}
            )
    store.finalize()
    moved = FeatureStore(tmp_path / 's')['a1'].to(device)
    assert moved.dtype == dtype and moved.device.type == device.type
    assert torch.equal(moved.cpu(), torch.full((5, 4), 1.5, dtype=dtype))
