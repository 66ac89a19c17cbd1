"""Small helpers every layer may use: a "did you mean" error, a Markdown table, the scope of
the zoo's Pyro settings, the check of a configuration's numbers, and a mixin that keeps a
``PyroModule`` subclass's class through ``copy.deepcopy``.

They sit at the bottom of the zoo's layers and import nothing of it.

Usage::

    from zoo.util import check_numbers, local_params, markdown_table, unknown_choice
    check_numbers(config)               # in a config dataclass's __post_init__
    raise unknown_choice("model", "lenet", ["lenet300-normal", "lenet5-normal"])
    print(markdown_table(frame))
    with local_params():                # the zoo's parameter handling, for this block only
        net = MyPyroModule()
"""

from __future__ import annotations

import copyreg
import dataclasses
import difflib
import functools
import math
import numbers
import types
import typing
from collections.abc import Sequence
from contextlib import AbstractContextManager, ContextDecorator
from typing import Any

__all__ = [
    "CopiesAsItself",
    "check_numbers",
    "ensure_local_params",
    "local_params",
    "markdown_table",
    "unknown_choice",
]


class CopiesAsItself:
    """Mixin, listed *before* ``PyroModule[...]`` among a subclass's bases, that makes
    ``copy.deepcopy`` (and pickling) rebuild the subclass itself.

    ``PyroModule[nn.Linear]`` defines ``__reduce__`` to rebuild ``PyroModule[nn.Linear]``, so
    without this a deep copy of a zoo layer (an ensemble member, torch's ``AveragedModel``, a
    net copied before fine-tuning) silently becomes the plain Pyro layer: same weights and
    sample sites, but the zoo's ``forward`` (the local reparameterization, SBP's noise) is gone.

    Usage::

        class BayesianLinear(CopiesAsItself, PyroModule[nn.Linear]): ...
        type(copy.deepcopy(BayesianLinear(3, 2)))   # BayesianLinear, not PyroLinear
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return copyreg.__newobj__, (type(self),), self.__getstate__()  # type: ignore[attr-defined]


class _LocalParams(ContextDecorator):
    # A list, not one slot: as a decorator the same object enters again in nested calls.
    def __init__(self) -> None:
        self._saved: list[bool] = []

    def __enter__(self) -> None:
        import pyro.settings  # local: keeps this module (and `zoo list`) free of Pyro at import

        was = pyro.settings.get("module_local_params")
        self._saved.append(was)
        if not was:
            pyro.settings.set(module_local_params=True)

    def __exit__(self, *exc: object) -> None:
        import pyro.settings

        if not self._saved.pop():
            pyro.settings.set(module_local_params=False)


def local_params() -> AbstractContextManager:
    """Pyro's ``module_local_params`` setting, on for a block or a function only: a context
    manager that also works as a decorator (``@local_params()``), and restores the setting as
    it found it on the way out, exceptions included.

    Inside it, every ``PyroModule`` keeps its parameters to itself instead of in Pyro's global
    parameter store, so several models with the same site names (``noise``, ``fc1.weight``...)
    live side by side in one process.  Pyro decides this when the top-level ``PyroModule`` is
    constructed (its sub-modules share that context) *and* each time it runs, so the zoo scopes
    both: building (:func:`zoo.create_model`) and every call that runs a model (training,
    evaluation, comparison, export).  Outside them nothing is changed: importing :mod:`zoo`
    leaves :func:`pyro.settings.get` as it was, and a zoo-made model and guide train in a plain
    ``pyro.infer.SVI`` loop through the global store like any ``PyroModule`` (see
    :mod:`zoo.train.trainer`).  Entering and leaving cost a few microseconds, next to the
    milliseconds of a training step.

    Usage::

        from zoo.util import local_params
        with local_params():
            zm = build_my_model()           # constructed with a local parameter state
            zm.model(x)                     # and run with it

        @local_params()
        def my_evaluation(zm, x): ...
    """
    return _LocalParams()


def ensure_local_params(module: Any) -> None:
    """Give every ``PyroModule`` in ``module`` built outside :func:`local_params` the local
    parameter state it would have been built with, so that the zoo's calls can run it.

    Pyro creates that state only when the setting is on as the top-level ``PyroModule`` is
    constructed; a net the user built (or converted) outside the zoo lacks it, and running it
    under the setting would fail deep inside Pyro.  Its parameters stay what they are (module
    attributes); the state is the empty one Pyro would have made.  :class:`zoo.spec.ZooModel`
    calls it on its model and guide.

    Usage::

        net = PyroModule[nn.Linear](4, 2)       # built outside local_params()
        ensure_local_params(net)                 # now the zoo's calls can run it
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        return
    from pyro.nn import PyroModule

    for sub in module.modules():
        # `_pyro_context` and its `param_state` are what pyro.nn.module._Context.__init__
        # sets up under module_local_params (Pyro 1.9); there is no public way to add it later.
        ctx = getattr(sub, "_pyro_context", None) if isinstance(sub, PyroModule) else None
        if ctx is not None and not hasattr(ctx, "param_state"):
            ctx.param_state = {"params": {}, "constraints": {}}


def unknown_choice(kind: str, name: str, choices: Sequence[str]) -> ValueError:
    """A ``ValueError`` for an unknown ``name`` of ``kind``, naming the closest ``choices``."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(choices)}.")


def markdown_table(frame: Any) -> str:
    """A pandas ``DataFrame`` as a GitHub Markdown table, floats to four significant digits."""

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


@functools.cache
def _number_fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """``(name, int or float, is a tuple of them)`` for the number fields of a dataclass."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
            hint = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        many = typing.get_origin(hint) is tuple
        base = typing.get_args(hint)[0] if many and typing.get_args(hint) else hint
        if base in (int, float):
            out.append((f.name, base, many))
    return tuple(out)


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (``2.0`` too, never a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def check_numbers(config: Any) -> None:
    """Refuse non-finite floats and non-integer counts in a dataclass instance, by its fields'
    type hints, before they can fail (or, like a ``nan`` threshold, silently change a result)
    later: a ``float`` field must be a finite real number; an ``int`` field a whole number,
    where ``2.0`` is taken and stored as ``2`` (``object.__setattr__``, frozen dataclasses
    included) and ``1.5``, ``nan`` and ``True`` are refused; a ``tuple[int, ...]`` field must
    hold whole numbers; ``None`` is left to a ``X | None`` field.  The configurations call it
    first in their ``__post_init__``, so the Python API and the command line refuse alike.

    Usage::

        @dataclass(frozen=True)
        class MyConfig:
            lr: float = 1e-3
            num_epochs: int = 10

            def __post_init__(self) -> None:
                check_numbers(self)     # MyConfig(lr=float("inf")) raises

    :raises ValueError: naming each field and its value.
    """
    problems = []
    for name, kind, many in _number_fields(type(config)):
        value = getattr(config, name)
        if value is None:
            continue
        if many:
            items = [_whole(v) if kind is int else v for v in value]
            bad = [v for v, w in zip(value, items, strict=True) if w is None]
            if bad:
                problems.append(f"{name} must hold whole numbers, got {bad[0]!r}")
            elif kind is int and items != list(value):
                object.__setattr__(config, name, tuple(items))
        elif kind is int:
            whole = _whole(value)
            if whole is None:
                problems.append(f"{name} must be a whole number, got {value!r}")
            elif type(value) is not int:
                object.__setattr__(config, name, whole)
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            problems.append(f"{name} must be a number, got {value!r}")
        elif not math.isfinite(value):
            problems.append(f"{name} must be a finite number, got {value!r}")
    if problems:
        raise ValueError("; ".join(problems))
