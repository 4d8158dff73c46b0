"""Raw-data lookup: $GRAPHOPS_DATA, then a source checkout's data/, else an error saying where."""

import pytest

from graphops.datasets import paths


def test_env_wins_and_must_be_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv('GRAPHOPS_DATA', str(tmp_path))
    assert paths.data_root() == tmp_path
    monkeypatch.setenv('GRAPHOPS_DATA', str(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError, match='is not a folder'):
        paths.data_root()


def test_source_checkout_data(monkeypatch):
    monkeypatch.delenv('GRAPHOPS_DATA', raising=False)
    checkout = paths.source_checkout()
    assert checkout is not None and (checkout / 'pyproject.toml').is_file()  # tests run from one
    assert paths.data_root() == checkout / 'data'


def test_installed_without_data_says_where_to_put_it(monkeypatch):
    monkeypatch.delenv('GRAPHOPS_DATA', raising=False)
    monkeypatch.setattr(paths, 'source_checkout', lambda: None)
    with pytest.raises(FileNotFoundError, match=r'set \$GRAPHOPS_DATA.*Cora/raw'):
        paths.data_root()


def test_cache_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv('GRAPHOPS_CACHE', str(tmp_path / 'c'))
    assert paths.cache_root() == tmp_path / 'c' and (tmp_path / 'c').is_dir()
