"""The papers100M configs on OmegaConf: inheritance by merge, struct mode, dotlist overrides.

A config names the configs it extends in a ``defaults`` list (names in ``configs/`` or paths
relative to the config), merged left to right with :func:`omegaconf.OmegaConf.merge` before the
config itself. ``base.yaml`` lists every key a config may set; a config extending it is merged in
struct mode, so a key the base does not have is an error that lists the keys it has. Mappings merge
key by key; lists replace. Command-line overrides are OmegaConf dotlists in the style of the seed
frameworks, ``--cfg-options train.lr=1e-3 operators.0.hops=2`` (``--set`` is an alias); values are
parsed as YAML by OmegaConf, so ``3`` is an int, ``1e-3`` a float, ``null`` None, ``[1, 2]`` a
list. Interpolations (``${train.lr}``) are resolved before the config is used.

The rest of the pipeline works on the resolved config as a plain ``dict``; :func:`dump` saves it as
``config.yaml`` beside each stage's outputs so a result can be traced to its settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

CONFIG_DIR = Path(__file__).resolve().parent / 'configs'
DEFAULTS_KEY = 'defaults'
_MISSING = object()


def resolve_config_path(name: str | os.PathLike, relative_to: Path | None = None) -> Path:
    """A path as given (or relative to ``relative_to``), or a shipped config by name
    (``sign_authors`` or ``sign_authors.yaml``)."""
    path = Path(name)
    candidates = [path]
    if relative_to is not None and not path.is_absolute():
        candidates += [relative_to / path, relative_to / f'{path}.yaml']
    candidates += [CONFIG_DIR / path, CONFIG_DIR / f'{path}.yaml']
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f'no config {str(name)!r}: give a YAML path or one of {shipped_configs()}'
    )


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob('*.yaml'))


def _describe(node: Any, where: str) -> str:
    if isinstance(node, DictConfig):
        return f'{where} has the keys {sorted(str(k) for k in node)}'
    if isinstance(node, ListConfig):
        return f'{where} is a list of {len(node)} items; index it with 0..{len(node) - 1}'
    return f'{where} is a {type(node).__name__}, not a mapping'


def _key_error(config: DictConfig, dotted: str, context: str, err: Exception) -> KeyError:
    """A KeyError naming the deepest part of ``dotted`` that exists and what it holds."""
    parts = dotted.split('.')
    depth = 0
    while depth < len(parts):
        found = OmegaConf.select(config, '.'.join(parts[: depth + 1]), default=_MISSING)
        if found is _MISSING:
            break
        depth += 1
    node = OmegaConf.select(config, '.'.join(parts[:depth])) if depth else config
    where = '.'.join(parts[:depth]) or 'the config'
    missing = parts[depth] if depth < len(parts) else parts[-1]
    detail = str(err).splitlines()[0]
    return KeyError(f'{context}: no key {missing!r} ({detail}); {_describe(node, where)}')


def _load(path: Path, seen: tuple[Path, ...]) -> DictConfig:
    if path in seen:
        chain = ' -> '.join(p.name for p in (*seen, path))
        raise ValueError(f'{DEFAULTS_KEY} loop in configs: {chain}')
    config = OmegaConf.load(path)
    if not isinstance(config, DictConfig):
        raise ValueError(f'{path} must hold a YAML mapping at the top, got a list')
    parents = config.pop(DEFAULTS_KEY, [])
    if isinstance(parents, str):
        parents = [parents]
    if not parents:
        return config
    merged = OmegaConf.merge(
        *(_load(resolve_config_path(p, path.parent), (*seen, path)) for p in parents)
    )
    # Struct mode: the parents' keys are the schema, so a typo in this file is an error.
    OmegaConf.set_struct(merged, True)
    try:
        merged = OmegaConf.merge(merged, config)
    except OmegaConfBaseException as err:
        raise _key_error(merged, getattr(err, 'full_key', '') or '', str(path), err) from err
    OmegaConf.set_struct(merged, True)
    return merged


def load_config(path: str | os.PathLike) -> DictConfig:
    """A config and its ``defaults`` chain merged into one struct-mode DictConfig."""
    return _load(resolve_config_path(path), ())


def parse_override(text: str) -> tuple[str, Any]:
    """``'train.lr=1e-3'`` -> ``('train.lr', 0.001)``, the value parsed as OmegaConf parses YAML."""
    if '=' not in text:
        raise ValueError(f'--cfg-options expects key=value (e.g. train.lr=1e-3), got {text!r}')
    key, raw = text.split('=', 1)
    key = key.strip()
    if not key or any(not part for part in key.split('.')):
        raise ValueError(f'--cfg-options key {key!r} is malformed; use dotted names like train.lr')
    value = OmegaConf.from_dotlist([f'value={raw}'])['value']
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return key, value


def apply_overrides(config: DictConfig, overrides: list[str]) -> DictConfig:
    """A copy of ``config`` with every ``key=value`` of ``overrides`` set (struct mode: only
    keys the config has; list items by index, ``operators.1.hops=5``)."""
    config = config.copy()
    OmegaConf.set_struct(config, True)
    for text in overrides:
        key, value = parse_override(text)
        # Keys are checked first: OmegaConf.update would replace a scalar by a mapping.
        parent = key.rsplit('.', 1)[0] if '.' in key else None
        node = config if parent is None else OmegaConf.select(config, parent, default=_MISSING)
        leaf = key.rsplit('.', 1)[-1]
        has_leaf = (isinstance(node, DictConfig) and leaf in node) or (
            isinstance(node, ListConfig)
            and leaf.lstrip('-').isdigit()
            and -len(node) <= int(leaf) < len(node)
        )
        if not has_leaf:
            raise _key_error(config, key, f'--cfg-options {text!r}', KeyError(key))
        try:
            OmegaConf.update(config, key, value, merge=False)
        except OmegaConfBaseException as err:
            raise _key_error(config, key, f'--cfg-options {text!r}', err) from err
    return config


def to_dict(config: DictConfig) -> dict:
    """The resolved config as plain Python containers."""
    return OmegaConf.to_container(config, resolve=True)


def fingerprint(value: Any, length: int = 10) -> str:
    """A short stable hash of a JSON-able value (the identity of a dataset or a store)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dump(config: dict | DictConfig, path: str | os.PathLike) -> None:
    """Writes the resolved config as YAML, atomically (a temporary file, fsync, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    text = OmegaConf.to_yaml(OmegaConf.create(config), resolve=True)
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_saved(path: str | os.PathLike) -> dict:
    """Reads a ``config.yaml`` :func:`dump` wrote back into the dict it was."""
    config = OmegaConf.load(path)
    if not isinstance(config, DictConfig):
        raise ValueError(f'{path} is not a saved papers100M config (no mapping at the top)')
    return to_dict(config)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every papers100M command shares; shortcuts write into the config."""
    parser.add_argument(
        '--config',
        default=None,
        help=f'YAML config (a path or one of {shipped_configs()}); default synthetic_default '
        'for the synthetic dataset, sign_authors for ogbn-papers100M',
    )
    parser.add_argument(
        '--cfg-options',
        '--set',
        dest='overrides',
        nargs='+',
        action='extend',
        default=[],
        metavar='KEY=VALUE',
        help='override config values by dotted key, e.g. --cfg-options train.lr=1e-3 '
        'model.hidden_channels=256 operators.0.hops=2 (--set is an alias)',
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


def parse_command(argv: list[str] | None, command: str, description: str):
    """``(config, args)`` of a pipeline command: the shared options plus ``--no-progress``,
    parsed, and the resolved config (a bad config fails here, before any work)."""
    parser = argparse.ArgumentParser(prog=f'graphops-papers100m {command}', description=description)
    add_config_arguments(parser)
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bars')
    args = parser.parse_args(argv)
    return config_from_args(args), args


def config_from_args(args: argparse.Namespace) -> dict:
    """The resolved config: file (and its defaults), then ``--cfg-options``, then the shortcut
    flags; as a plain dict with ``config_name`` added."""
    name = args.config
    if name is None:
        name = 'sign_authors' if args.dataset == 'ogbn-papers100M' else 'synthetic_default'
    config = load_config(name)
    with open_dict(config):
        config['config_name'] = resolve_config_path(name).stem
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
    return to_dict(apply_overrides(config, sets))
