"""Checks for the drop-in contract: a graphops name behaves like its PyG counterpart.

Each helper raises :class:`AssertionError` with a message that names what differs, so a
table-driven test (``tests/test_pyg_contract.py``) can call them once per pair:

* :func:`assert_signature_compatible` -- every PyG argument is accepted under the same name, with
  the same default and in the same positional order; whatever graphops adds is keyword-only.
* :func:`assert_raises_type_error_naming` -- an argument graphops does not take (an unknown one, or
  a PyG one it does not support) raises :class:`TypeError` naming it, never silently ignored.
* :func:`assert_state_dict_exchange` -- PyG's ``state_dict`` loads into ours with ``strict=True``
  and ours into PyG's, and both then give the same outputs.
* :func:`assert_repr_equal`, :func:`assert_seeded_init_equal` -- ``repr`` and seeded
  initialisation equal PyG's.
* :func:`assert_transform_keys_equal` -- a transform adds the same keys to a ``Data`` as PyG's
  (so ``len(data)`` and ``data.keys()`` agree), with the same values.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)

__all__ = [
    'assert_outputs_close',
    'assert_raises_type_error_naming',
    'assert_repr_equal',
    'assert_seeded_init_equal',
    'assert_signature_compatible',
    'assert_state_dict_exchange',
    'assert_transform_keys_equal',
    'defaults_equal',
    'keyword_only_extras',
    'parameters_of',
    'transform_added_keys',
]


def parameters_of(obj: Callable) -> list[inspect.Parameter]:
    """The call parameters of a function, or of a class's constructor without ``self``."""
    if inspect.isclass(obj):
        params = list(inspect.signature(obj.__init__).parameters.values())
        return params[1:]
    return list(inspect.signature(obj).parameters.values())


def defaults_equal(a: Any, b: Any) -> bool:
    """Whether two defaults are the same value (identity, or equal values of the same type)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 -- an uncomparable default is not equal
        return False


def keyword_only_extras(ours: Callable, theirs: Callable) -> list[str]:
    """Names graphops accepts that PyG's signature does not have (variadic ones excluded)."""
    their_names = {p.name for p in parameters_of(theirs) if p.kind not in _VARIADIC}
    return [
        p.name for p in parameters_of(ours) if p.kind not in _VARIADIC and p.name not in their_names
    ]


def assert_signature_compatible(
    ours: Callable,
    theirs: Callable,
    *,
    unsupported: Iterable[str] = (),
    may_default: Iterable[str] = (),
) -> None:
    """Assert ``ours`` is called like ``theirs``.

    * PyG's positional parameters open ours' positional parameters, in the same order;
    * every named PyG parameter is accepted under the same name with the same default;
    * every parameter ours adds is keyword-only; ours takes ``*args`` only where PyG does, and
      ``**kwargs`` only where PyG does (it must then reject unknown names itself, which
      :func:`assert_raises_type_error_naming` checks).

    Args:
        ours (callable): the graphops class or function.
        theirs (callable): the PyG class or function.
        unsupported (iterable of str, optional): PyG parameter names that graphops deliberately
            does not take; each must instead raise a :class:`TypeError` naming it (checked with
            :func:`assert_raises_type_error_naming`). (default: ``()``)
        may_default (iterable of str, optional): parameters PyG requires that graphops may give a
            default (every PyG call passes them, so the default never changes one); e.g.
            ``SIGN``'s ``K``, optional because ``operators=`` can replace it. (default: ``()``)
    """
    unsupported = set(unsupported)
    may_default = set(may_default)
    mine = parameters_of(ours)
    pyg = parameters_of(theirs)
    by_name = {p.name: p for p in mine}
    problems: list[str] = []

    pyg_positional = [p.name for p in pyg if p.kind in _POSITIONAL]
    my_positional = [p.name for p in mine if p.kind in _POSITIONAL]
    if my_positional[: len(pyg_positional)] != pyg_positional:
        problems.append(
            f"positional order {my_positional} does not start with PyG's {pyg_positional}"
        )

    for p in pyg:
        if p.kind in _VARIADIC:
            continue
        if p.name in unsupported:
            if p.name in by_name:
                problems.append(f'{p.name!r} is listed as unsupported but graphops accepts it')
            continue
        q = by_name.get(p.name)
        if q is None:
            problems.append(f'PyG argument {p.name!r} is missing')
            continue
        if q.kind == inspect.Parameter.POSITIONAL_ONLY:
            problems.append(f'{p.name!r} is positional-only in graphops')
        if p.default is inspect.Parameter.empty and p.name in may_default:
            pass
        elif (p.default is inspect.Parameter.empty) != (q.default is inspect.Parameter.empty):
            problems.append(
                f'{p.name!r}: PyG {"requires it" if p.default is inspect.Parameter.empty else "has a default"}'
                f', graphops {"requires it" if q.default is inspect.Parameter.empty else "has a default"}'
            )
        elif not defaults_equal(p.default, q.default):
            problems.append(f'{p.name!r} defaults to {q.default!r}, PyG to {p.default!r}')

    their_kinds = {p.kind for p in pyg}
    for kind, spelling in (
        (inspect.Parameter.VAR_POSITIONAL, '*args'),
        (inspect.Parameter.VAR_KEYWORD, '**kwargs'),
    ):
        if any(q.kind == kind for q in mine) and kind not in their_kinds:
            problems.append(f'graphops takes {spelling} where PyG does not')
    for name in keyword_only_extras(ours, theirs):
        if by_name[name].kind != inspect.Parameter.KEYWORD_ONLY:
            problems.append(f'graphops extra {name!r} is not keyword-only')

    if problems:
        label = getattr(ours, '__qualname__', repr(ours))
        raise AssertionError(f'{label} vs PyG: ' + '; '.join(problems))


def assert_raises_type_error_naming(fn: Callable, name: str, *args: Any, **kwargs: Any) -> None:
    """Assert ``fn(*args, **kwargs)`` raises :class:`TypeError` whose message contains ``name``.

    Use it for a made-up keyword (passed in ``kwargs``) and for each PyG argument graphops does
    not support: neither may be swallowed and ignored.
    """
    try:
        fn(*args, **kwargs)
    except TypeError as err:
        if name not in str(err):
            raise AssertionError(f'TypeError does not name {name!r}: {err}') from err
        return
    raise AssertionError(f'{getattr(fn, "__qualname__", fn)} accepted {name!r} without a TypeError')


def assert_outputs_close(
    ours: Any, theirs: Any, *, atol: float = 1e-6, rtol: float = 0.0, path: str = 'out'
) -> None:
    """Recursive allclose over tensors, tuples, lists and dicts (``None`` must match ``None``)."""
    if isinstance(theirs, Tensor):
        if not isinstance(ours, Tensor):
            raise AssertionError(f'{path}: graphops gives {type(ours).__name__}, PyG a Tensor')
        if ours.shape != theirs.shape:
            raise AssertionError(f'{path}: shape {tuple(ours.shape)} vs PyG {tuple(theirs.shape)}')
        if ours.dtype.is_floating_point or theirs.dtype.is_floating_point:
            ok = torch.allclose(
                ours.double(), theirs.double(), atol=atol, rtol=rtol, equal_nan=True
            )
            if not ok:
                diff = (ours.double() - theirs.double()).abs().max().item()
                raise AssertionError(f'{path}: max |diff| {diff:.3g} > atol {atol:g}')
        elif not torch.equal(ours, theirs):
            raise AssertionError(f'{path}: integer outputs differ')
        return
    if isinstance(theirs, Mapping):
        if set(ours) != set(theirs):
            raise AssertionError(f'{path}: keys {sorted(ours)} vs PyG {sorted(theirs)}')
        for k in theirs:
            assert_outputs_close(ours[k], theirs[k], atol=atol, rtol=rtol, path=f'{path}[{k!r}]')
        return
    if isinstance(theirs, (tuple, list)):
        if not isinstance(ours, (tuple, list)) or len(ours) != len(theirs):
            raise AssertionError(f"{path}: {type(ours).__name__} of another length than PyG's")
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_outputs_close(a, b, atol=atol, rtol=rtol, path=f'{path}[{i}]')
        return
    if ours != theirs:
        raise AssertionError(f'{path}: {ours!r} vs PyG {theirs!r}')


def _assert_same_keys(dst: torch.nn.Module, src_state: Mapping[str, Tensor], label: str) -> None:
    mine = set(dst.state_dict())
    theirs = set(src_state)
    if mine != theirs:
        raise AssertionError(
            f'{label}: missing {sorted(mine - theirs)}, unexpected {sorted(theirs - mine)}'
        )


def assert_state_dict_exchange(
    ours: torch.nn.Module,
    theirs: torch.nn.Module,
    run_ours: Callable[[torch.nn.Module], Any],
    run_theirs: Callable[[torch.nn.Module], Any] | None = None,
    *,
    atol: float = 1e-6,
    rtol: float = 0.0,
    seed: int = 0,
) -> None:
    """Assert the ``state_dict`` moves both ways with ``strict=True`` and the outputs then agree.

    First PyG's state is loaded into ours; then ours' floating parameters are redrawn (seeded)
    and loaded into PyG's, so the second direction carries values PyG never had. Both modules are
    put in eval mode; ``run_*`` receive the module and return its output(s).
    """
    run_theirs = run_theirs or run_ours
    ours.eval()
    theirs.eval()

    _assert_same_keys(ours, theirs.state_dict(), 'PyG -> graphops state_dict')
    ours.load_state_dict(theirs.state_dict(), strict=True)
    with torch.no_grad():
        assert_outputs_close(
            run_ours(ours), run_theirs(theirs), atol=atol, rtol=rtol, path='PyG->graphops'
        )

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in ours.parameters():
            if p.is_floating_point():
                p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device))
    _assert_same_keys(theirs, ours.state_dict(), 'graphops -> PyG state_dict')
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        assert_outputs_close(
            run_ours(ours), run_theirs(theirs), atol=atol, rtol=rtol, path='graphops->PyG'
        )


def assert_repr_equal(ours: Any, theirs: Any) -> None:
    """``repr(ours) == repr(theirs)``, with both strings in the message when they differ."""
    a, b = repr(ours), repr(theirs)
    if a != b:
        raise AssertionError(f'repr differs:\n  graphops: {a}\n  PyG:      {b}')


def assert_seeded_init_equal(
    make_ours: Callable[[], torch.nn.Module],
    make_theirs: Callable[[], torch.nn.Module],
    *,
    seed: int = 12345,
) -> None:
    """Built under the same ``torch.manual_seed``, both modules hold equal parameters and buffers."""
    torch.manual_seed(seed)
    ours = make_ours()
    torch.manual_seed(seed)
    theirs = make_theirs()
    a, b = ours.state_dict(), theirs.state_dict()
    if set(a) != set(b):
        raise AssertionError(f'state_dict keys differ: {sorted(set(a) ^ set(b))}')
    for k in b:
        if a[k].shape != b[k].shape or not torch.equal(a[k], b[k]):
            raise AssertionError(f'seeded initialisation differs at {k!r}')


def transform_added_keys(transform: Callable, data: Any) -> set[str]:
    """The keys ``transform`` adds to a copy of ``data``."""
    before = set(data.keys())
    out = transform(copy.copy(data))
    return set(out.keys()) - before


def assert_transform_keys_equal(
    ours: Callable, theirs: Callable, data: Any, *, atol: float = 1e-6, rtol: float = 0.0
) -> None:
    """The transforms add the same keys to ``data`` (so ``len`` agrees) with the same values."""
    a = ours(copy.copy(data))
    b = theirs(copy.copy(data))
    ka, kb = set(a.keys()), set(b.keys())
    if ka != kb:
        raise AssertionError(
            f'keys differ: graphops adds {sorted(ka - kb)}, lacks {sorted(kb - ka)}'
        )
    if len(a) != len(b):
        raise AssertionError(f'len(data) {len(a)} vs PyG {len(b)}')
    for k in sorted(kb):
        assert_outputs_close(a[k], b[k], atol=atol, rtol=rtol, path=k)
