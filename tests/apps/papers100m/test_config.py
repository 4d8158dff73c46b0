"""The papers100M configs on OmegaConf: defaults chains, struct mode, dotlist overrides, dumps."""

import argparse

import pytest
from omegaconf import DictConfig, OmegaConf

from graphops.apps.papers100m.config import (
    CONFIG_DIR,
    add_config_arguments,
    apply_overrides,
    config_from_args,
    dump,
    load_config,
    load_saved,
    parse_override,
    to_dict,
)


def write(path, text):
    path.write_text(text)
    return path


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_chain_merges_and_lists_replace(tmp_path):
    write(
        tmp_path / 'grand.yaml', 'a: 1\nb: 0\nnested: {x: 1, y: 2, deep: {p: 1}}\nitems: [1, 2]\n'
    )
    write(tmp_path / 'parent.yaml', 'defaults: [grand]\nnested: {y: 3}\nitems: [9]\n')
    child = write(
        tmp_path / 'child.yaml', 'defaults: [parent.yaml]\nb: 2\nnested: {deep: {p: 5}}\n'
    )
    config = load_config(child)
    assert isinstance(config, DictConfig) and OmegaConf.is_struct(config)
    assert to_dict(config) == {
        'a': 1,
        'b': 2,
        'nested': {'x': 1, 'y': 3, 'deep': {'p': 5}},
        'items': [9],  # lists replace, never concatenate
    }


def test_several_defaults_merge_left_to_right(tmp_path):
    write(tmp_path / 'one.yaml', 'a: 1\nb: 1\nc: 0\n')
    write(tmp_path / 'two.yaml', 'b: 2\nc: 2\n')
    child = write(tmp_path / 'child.yaml', 'defaults: [one, two]\nc: 3\n')
    assert to_dict(load_config(child)) == {'a': 1, 'b': 2, 'c': 3}


def test_a_key_the_parents_lack_is_an_error_listing_theirs(tmp_path):
    write(tmp_path / 'base.yaml', 'train: {lr: 0.1, epochs: 3}\n')
    child = write(tmp_path / 'child.yaml', 'defaults: [base]\ntrain: {lrr: 0.2}\n')
    with pytest.raises(KeyError, match=r"no key 'lrr'.*train has the keys \['epochs', 'lr'\]"):
        load_config(child)


def test_defaults_loop_is_an_error(tmp_path):
    write(tmp_path / 'a.yaml', 'defaults: [b]\n')
    write(tmp_path / 'b.yaml', 'defaults: [a]\n')
    with pytest.raises(ValueError, match='defaults loop'):
        load_config(tmp_path / 'a.yaml')


def test_unknown_config_names_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match='sign_authors'):
        load_config('sign_author')


def test_yaml_floats_without_a_dot_are_floats(tmp_path):
    path = write(tmp_path / 'c.yaml', 'lr: 1e-3\nother: 5.0e-5\n')
    config = load_config(path)
    assert type(config.lr) is float and config.lr == 1e-3 and config.other == 5e-5


@pytest.mark.parametrize(
    'override,expected',
    [
        ('train.lr=1e-3', ('train', 'lr', 1e-3)),
        ('train.runs=3', ('train', 'runs', 3)),
        ('model.mode=concat-mlp', ('model', 'mode', 'concat-mlp')),
        ('train.max_hops=null', ('train', 'max_hops', None)),
        ('model.batch_norm=false', ('model', 'batch_norm', False)),
    ],
)
def test_overrides_parse_yaml_values(override, expected):
    config = to_dict(apply_overrides(load_config('sign_authors'), [override]))
    section, key, value = expected
    assert config[section][key] == value
    assert type(config[section][key]) is type(value)


def test_override_indexes_lists_and_takes_lists():
    config = apply_overrides(load_config('sign_authors'), ['operators.1.hops=5'])
    assert config.operators[1].hops == 5 and config.operators[0].hops == 3
    assert parse_override('a=[1, 2]') == ('a', [1, 2])


def test_overrides_do_not_touch_their_input():
    config = load_config('sign_authors')
    apply_overrides(config, ['train.runs=1'])
    assert config.train.runs == 10


@pytest.mark.parametrize(
    'override,error,match',
    [
        ('train.lrr=1', KeyError, r"no key 'lrr'.*train has the keys \[.*'lr'"),
        ('trian.lr=1', KeyError, r"no key 'trian'.*the config has the keys \[.*'train'"),
        ('operators.7.hops=1', KeyError, 'operators is a list of 3 items'),
        ('train.lr.x=1', KeyError, 'train.lr is a float, not a mapping'),
        ('train.lr', ValueError, 'expects key=value'),
        ('train..lr=1', ValueError, 'malformed'),
    ],
)
def test_bad_overrides(override, error, match):
    with pytest.raises(error, match=match):
        apply_overrides(load_config('sign_authors'), [override])


def test_cfg_options_and_its_set_alias():
    a = config_from_args(parse(['--cfg-options', 'train.runs=3', 'train.lr=0.5']))
    b = config_from_args(parse(['--set', 'train.runs=3', '--set', 'train.lr=0.5']))
    assert a == b and a['train']['runs'] == 3 and a['train']['lr'] == 0.5
    with pytest.raises(KeyError, match="no key 'runz'"):
        config_from_args(parse(['--cfg-options', 'train.runz=3']))


def test_cli_shortcuts_and_default_config(tmp_path):
    config = config_from_args(
        parse(['--runs', '2', '--epochs', '4', '--output', str(tmp_path), '--device', 'cpu'])
    )
    assert isinstance(config, dict) and config['config_name'] == 'synthetic_default'
    assert (config['train']['runs'], config['train']['epochs']) == (2, 4)
    assert config['output'] == str(tmp_path) and config['device'] == 'cpu'
    real = config_from_args(parse(['--dataset', 'ogbn-papers100M', '--root', '/data']))
    assert real['config_name'] == 'sign_authors'
    assert real['dataset'] == {**real['dataset'], 'name': 'ogbn-papers100M', 'root': '/data'}
    # A flag wins over --cfg-options, which wins over the file.
    both = config_from_args(parse(['--set', 'train.runs=7', '--runs', '2']))
    assert both['train']['runs'] == 2


def test_interpolations_are_resolved(tmp_path):
    path = write(tmp_path / 'c.yaml', 'defaults: [base]\nname: lr-${train.lr}\n')
    config = config_from_args(parse(['--config', str(path), '--set', 'train.lr=0.5']))
    assert config['name'] == 'lr-0.5' and config['config_name'] == 'c'


def test_dump_round_trips_atomically(tmp_path):
    config = config_from_args(parse([]))
    path = tmp_path / 'out' / 'config.yaml'
    dump(config, path)
    assert load_saved(path) == config
    assert [p.name for p in path.parent.iterdir()] == ['config.yaml']  # no temporary left


def test_sign_authors_config_is_the_authors_setting():
    config = to_dict(load_config('sign_authors'))
    ops = config['operators']
    assert [op['hops'] for op in ops] == [3, 3, 3]
    assert [op['direction'] for op in ops] == ['symmetric', 'transposed', 'directed']
    assert [op['dropedge'] for op in ops] == [0.4, 0.2, 0.2]
    assert config['model'] == {
        **config['model'],
        'mode': 'concat-mlp',
        'hidden_channels': 512,
        'head_layers': 3,
        'dropout': 0.3,
    }
    train = config['train']
    assert (train['lr'], train['epochs'], train['batch_size'], train['runs']) == (5e-5, 45, 256, 10)
    xl = to_dict(load_config('sign_xl'))
    assert xl['operators'] == ops and xl['model']['hidden_channels'] == 2048


@pytest.mark.parametrize('path', sorted(CONFIG_DIR.glob('*.yaml')), ids=lambda p: p.stem)
def test_every_shipped_config_has_the_base_keys(path):
    config = load_config(path)
    base = load_config('base')
    assert set(config) == set(base)
    for section in ('dataset', 'precompute', 'model', 'train'):
        assert set(config[section]) == set(base[section]), section
