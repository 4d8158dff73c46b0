"""YAML configs that inherit from a base, with ``--set key=value`` overrides.

The habit of MMDetection / Detectron2: a config names its parent with ``_base_: base.yaml`` (a
path relative to the config, or a list of them, merged left to right); the child's mappings are
merged into the parent's key by key, everything else (numbers, strings, lists) replaces the
parent's value, and ``_delete_: true`` inside a mapping replaces the parent's mapping whole.
``--set train.lr=1e-3 model.mode=concat-mlp`` then overrides single values by dotted key (list
items by index: ``operators.0.hops=2``); values are parsed as YAML, so ``3`` is an int, ``null`` is
None and ``[1, 2]`` a list. A key the config does not have is an error that lists the keys it has:
a typo never passes silently.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'
BASE_KEY = '_base_'
DELETE_KEY = '_delete_'


def _yaml():
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "the papers100M configs need PyYAML: pip install pyyaml (or graphops' 'bench' extra)"
        ) from err
    return yaml


_LOADER = None


def _loader():
    """PyYAML's SafeLoader, except that ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3`` and reads
    ``1e-3`` as a string, a trap for learning rates)."""
    global _LOADER
    if _LOADER is None:
        import re

        yaml = _yaml()

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver(
            'tag:yaml.org,2002:float',
            re.compile(
                r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""",
                re.X,
            ),
            list('-+0123456789.'),
        )
        _LOADER = Loader
    return _LOADER


def parse_yaml(text: str):
    return _yaml().load(text, Loader=_loader())


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A path as given, or a config of ``configs/`` by name (``sign_authors`` or
    ``sign_authors.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    for candidate in (CONFIG_DIR / path, CONFIG_DIR / f'{path}.yaml'):
        if candidate.is_file():
            return candidate
    shipped = sorted(p.stem for p in CONFIG_DIR.glob('*.yaml'))
    raise FileNotFoundError(f'no config {str(name)!r}: give a YAML path or one of {shipped}')


def merge(base: dict, child: dict) -> dict:
    """``child`` merged into a copy of ``base`` (mappings recursively, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict):
            value = dict(value)
            replace = value.pop(DELETE_KEY, False)
            if not replace and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
                continue
        out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """Reads a config and its ``_base_`` chain into one mapping."""
    path = resolve_config_path(path)
    if path in _seen:
        chain = ' -> '.join(str(p.name) for p in (*_seen, path))
        raise ValueError(f'_base_ loop in configs: {chain}')
    with open(path) as f:
        data = parse_yaml(f.read()) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{path} must hold a YAML mapping at the top, got {type(data).__name__}')
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        merged = merge(merged, load_config(path.parent / base, (*_seen, path)))
    return merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    if '=' not in text:
        raise ValueError(f'--set expects key=value (e.g. train.lr=1e-3), got {text!r}')
    key, raw = text.split('=', 1)
    key = key.strip()
    if not key or any(not part for part in key.split('.')):
        raise ValueError(f'--set key {key!r} is malformed; use dotted names like train.lr')
    return key.split('.'), parse_yaml(raw) if raw.strip() else None


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """A copy of ``config`` with every ``key=value`` of ``overrides`` set."""
    config = copy.deepcopy(config)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = config
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = '.'.join(parts[:depth]) or 'the config'
            if isinstance(node, list):
                if not part.lstrip('-').isdigit() or not -len(node) <= int(part) < len(node):
                    raise KeyError(
                        f'--set {text!r}: {where} is a list of {len(node)} items; index it with '
                        f'0..{len(node) - 1}'
                    )
                index = int(part)
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if part not in node:
                    raise KeyError(
                        f'--set {text!r}: {where} has no key {part!r}; its keys are {sorted(node)}'
                    )
                if last:
                    node[part] = value
                else:
                    node = node[part]
            else:
                raise KeyError(f'--set {text!r}: {where} is a {type(node).__name__}, not a mapping')
    return config


def fingerprint(value: Any, length: int = 10) -> str:
    """A short stable hash of a JSON-able value (the identity of a dataset or a store)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dump(config: dict, path: str | os.PathLike) -> None:
    """Writes the resolved config (atomically) so every output says what made it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    with open(tmp, 'w') as f:
        _yaml().safe_dump(config, f, sort_keys=False)
    os.replace(tmp, path)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every papers100M script shares; shortcuts write into the config."""
    parser.add_argument(
        '--config',
        default=None,
        help='YAML config (a path or a name in benchmarks/papers100m/configs); default '
        'synthetic_default for the synthetic dataset, sign_authors for ogbn-papers100M',
    )
    parser.add_argument(
        '--set',
        dest='overrides',
        nargs='+',
        action='extend',
        default=[],
        metavar='KEY=VALUE',
        help='override config values by dotted key, e.g. --set train.lr=1e-3 model.hidden_channels=256',
    )
    parser.add_argument(
        '--dataset',
        choices=['synthetic', 'ogbn-papers100M'],
        default=None,
        help='synthetic: generate SyntheticPapers in the ogb layout (default); ogbn-papers100M: '
        'the real data under --root (never downloaded)',
    )
    parser.add_argument('--root', default=None, help="ogb's dataset root (holds ogbn_papers100M/)")
    parser.add_argument('--output', default=None, help='output folder (default outputs/papers100m)')
    parser.add_argument('--device', default=None, help="'auto', 'cpu', 'cuda', 'cuda:1'...")
    parser.add_argument('--runs', type=int, default=None, help='training runs (seeds)')
    parser.add_argument('--epochs', type=int, default=None, help='epochs per run')


def config_from_args(args: argparse.Namespace) -> dict:
    """The resolved config: file (and its bases), then ``--set``, then the shortcut flags."""
    name = args.config
    if name is None:
        name = 'sign_authors' if args.dataset == 'ogbn-papers100M' else 'synthetic_default'
    config = load_config(name)
    config['config_name'] = Path(resolve_config_path(name)).stem
    config = apply_overrides(config, args.overrides)
    shortcuts = {
        'dataset.name': args.dataset,
        'dataset.root': args.root,
        'output': args.output,
        'device': args.device,
        'train.runs': args.runs,
        'train.epochs': args.epochs,
    }
    sets = [f'{key}={json.dumps(value)}' for key, value in shortcuts.items() if value is not None]
    return apply_overrides(config, sets)
