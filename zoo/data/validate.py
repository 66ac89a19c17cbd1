"""Checks on tensors before they reach a model, and user tensors wrapped as a :class:`Dataset`.

:func:`validate_tensors` is what :func:`zoo.data.load` runs on every loader's output and what
:func:`from_tensors` runs on a user's arrays; its messages name the argument and the count and
first index of the bad rows. :func:`check_min` and :func:`check_split` are the argument checks
the loaders' info functions share.

Usage::

    from zoo.data.validate import from_tensors, validate_tensors

    validate_tensors(x, y, task="classification", num_classes=10)   # raises ValueError if bad
    ds = from_tensors(torch.randn(100, 4), torch.randint(0, 3, (100,)))
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from zoo.data.types import TASKS, DataInfo, Dataset, Parts

__all__ = [
    "as_dataset",
    "check_min",
    "check_parts",
    "check_split",
    "from_tensors",
    "regression_vector",
    "validate_tensors",
]


# --------------------------------------------------------------------------------------------
# Tensor checks
# --------------------------------------------------------------------------------------------


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        arr = np.asarray(value)
        # torch warns on read-only arrays and rejects negative strides (e.g. a[::-1]); a C-order
        # copy sidesteps both, and from_tensors copies anyway.
        if not (arr.flags.writeable and arr.flags.c_contiguous):
            arr = np.array(arr, order="C", copy=True)
        return torch.as_tensor(arr)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{what} cannot be converted to a tensor: {err}") from err


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return dtype == torch.bool or not (dtype.is_floating_point or dtype.is_complex)


def _infer_task(y: torch.Tensor | None) -> str:
    if y is None:
        return "unsupervised"
    return "classification" if _is_integer_dtype(y.dtype) else "regression"


def _y_name(where: str) -> str:
    # Keeps messages aligned with the caller's argument names: x -> y, x_test -> y_test.
    return "y" + where[1:] if where.startswith("x") else f"labels of {where}"


def _bad_rows(mask: torch.Tensor) -> tuple[int, int]:
    """Count of rows flagged in ``mask`` (one bool per row) and the index of the first one."""
    idx = torch.nonzero(mask).flatten()
    return int(idx.numel()), int(idx[0]) if idx.numel() else -1


def _check_finite(t: torch.Tensor, name: str) -> None:
    if _is_integer_dtype(t.dtype):
        return
    # A finite sum proves every value finite (a NaN or inf anywhere makes it NaN or inf), in
    # one pass without a mask the size of the data: 60000 Fashion-MNIST images took 0.7 s per
    # fit through the mask.  Otherwise (a bad value, or an overflowing sum) the rows decide.
    if torch.isfinite(t.sum()):
        return
    bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
    count, first = _bad_rows(bad)
    if count:
        raise ValueError(
            f"{name} has non-finite values (NaN or inf) in {count} of {t.shape[0]} rows; "
            f"first bad row: {first}"
        )


def _check_task(task: str | None) -> None:
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def _check_inputs(xt: torch.Tensor, where: str) -> None:
    """Real values, at least two dimensions, at least one row, all finite."""
    if xt.dtype.is_complex:
        raise ValueError(f"{where} must be real-valued, got dtype {xt.dtype}")
    if xt.dim() < 2:
        raise ValueError(
            f"{where} must have at least 2 dimensions (examples, features...), "
            f"got shape {tuple(xt.shape)}; reshape a single feature to (N, 1)"
        )
    if xt.shape[0] == 0:
        raise ValueError(f"{where} is empty (0 examples)")
    _check_finite(xt, where)


def _check_num_classes(num_classes: int | None) -> None:
    if num_classes is not None and (
        not isinstance(num_classes, numbers.Integral)
        or isinstance(num_classes, bool)
        or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")


def _check_targets(yt: torch.Tensor, yname: str, xt: torch.Tensor, where: str) -> None:
    """Real values, one row per row of ``xt``, all finite."""
    if yt.dtype.is_complex:
        raise ValueError(f"{yname} must be real-valued, got dtype {yt.dtype}")
    if yt.dim() == 0:
        raise ValueError(f"{yname} must have one entry per example, got a scalar")
    if yt.shape[0] != xt.shape[0]:
        raise ValueError(f"{yname} has {yt.shape[0]} rows but {where} has {xt.shape[0]}")
    _check_finite(yt, yname)


def regression_vector(y: torch.Tensor | None, name: str = "y") -> torch.Tensor | None:
    """Regression targets as ``(N,)``: an ``(N, 1)`` column is flattened (a view), ``(N,)`` and
    ``None`` pass unchanged.

    :param name: the argument's name in messages.
    :raises ValueError: for any other shape, e.g. ``(N, 2)`` (the zoo's regression likelihoods
        have one output).

    Usage::

        regression_vector(torch.zeros(5, 1)).shape   # torch.Size([5])
    """
    if y is None or y.dim() == 1:
        return y
    if y.dim() == 2 and y.shape[1] == 1:
        return y[:, 0]
    raise ValueError(
        f"{name} holds regression targets and must have shape (N,) or (N, 1), got "
        f"{tuple(y.shape)}; one target per example"
    )


def _check_labels(yt: torch.Tensor, yname: str, num_classes: int | None) -> None:
    """1-D whole numbers in ``0 .. num_classes - 1``."""
    if yt.dim() != 1:
        raise ValueError(f"{yname} holds class labels and must be 1-D, got shape {tuple(yt.shape)}")
    if not _is_integer_dtype(yt.dtype):
        # Float labels are accepted as long as they are whole numbers (e.g. 3.0).
        count, first = _bad_rows(yt != torch.round(yt))
        if count:
            raise ValueError(
                f"{yname} must hold integer class labels; {count} are not whole numbers, "
                f"first at index {first} (value {yt[first].item()})"
            )
    labels = yt.to(torch.int64)
    count, first = _bad_rows(labels < 0)
    if count:
        raise ValueError(
            f"{yname} has {count} negative class labels; first at index {first} "
            f"(value {labels[first].item()})"
        )
    if num_classes is not None:
        count, first = _bad_rows(labels >= num_classes)
        if count:
            raise ValueError(
                f"{yname} has {count} labels >= num_classes={num_classes}; first at index "
                f"{first} (value {labels[first].item()})"
            )


def validate_tensors(
    x: Any,
    y: Any = None,
    *,
    task: str | None = None,
    num_classes: int | None = None,
    where: str = "x",
) -> None:
    """Check inputs (and optional targets) before they reach a model.

    :param x: inputs, shape ``(N, ...)`` with at least two dimensions; tensor or array-like.
    :param y: targets with ``N`` rows, or ``None``.
    :param task: ``"classification"``, ``"regression"`` or ``"unsupervised"``; inferred from
        ``y``'s dtype when ``None`` (integer labels mean classification).
    :param num_classes: upper bound (exclusive) for class labels, if known.
    :param where: name of the ``x`` argument used in messages (``y``'s name is derived from it,
        e.g. ``"x_test"`` -> ``"y_test"``).
    :raises ValueError: naming the argument and the count and first index of bad rows.
    """
    yname = _y_name(where)
    xt = _as_tensor(x, where)
    _check_inputs(xt, where)
    _check_task(task)
    _check_num_classes(num_classes)

    if y is None:
        if task in ("classification", "regression"):
            raise ValueError(f"task {task!r} needs targets, but {yname} is None")
        return

    yt = _as_tensor(y, yname)
    _check_targets(yt, yname, xt, where)
    resolved = task or _infer_task(yt)
    if resolved == "classification":
        _check_labels(yt, yname, num_classes)
    elif resolved == "regression" and yt.dim() != 1:
        raise ValueError(
            f"{yname} holds regression targets and must be 1-D (N,), got shape "
            f"{tuple(yt.shape)}; from_tensors flattens an (N, 1) column for you"
        )


# --------------------------------------------------------------------------------------------
# User tensors
# --------------------------------------------------------------------------------------------


def check_parts(parts: Parts, task: str, num_classes: int | None) -> Parts:
    """A loader's output, checked as :func:`zoo.data.load` checks every loader's: both splits
    through :func:`validate_tensors` (training split first), returned unchanged but for
    regression targets of shape ``(N, 1)``, flattened to ``(N,)`` (:func:`regression_vector`).

    :raises ValueError: naming the split, as :func:`validate_tensors` does.
    """
    x_train, y_train, x_test, y_test, extras = parts
    if task == "regression":
        y_train = regression_vector(y_train, "y_train")
        y_test = regression_vector(y_test, "y_test")
    validate_tensors(x_train, y_train, task=task, num_classes=num_classes, where="x_train")
    validate_tensors(x_test, y_test, task=task, num_classes=num_classes, where="x_test")
    return x_train, y_train, x_test, y_test, extras


def _image_shape(input_shape: tuple[int, ...]) -> tuple[int, int] | None:
    # Only (C, H, W) is unambiguous; a 2-D example could as well be a sequence of vectors.
    if len(input_shape) == 3:
        return (input_shape[1], input_shape[2])
    return None


def _resolve_task(task: str | None, yt: torch.Tensor | None, num_classes: int | None) -> str:
    """``task``, inferred from ``yt`` when ``None``; refuses ``num_classes`` without classes."""
    if task is None:
        task = _infer_task(yt)
    if num_classes is not None and task != "classification":
        raise ValueError(
            f"num_classes only applies to classification, but the task is {task!r}; "
            "pass task='classification' (and integer labels) to classify"
        )
    return task


def _test_tensors(
    xt: torch.Tensor,
    yt: torch.Tensor | None,
    x_test: Any,
    y_test: Any,
    task: str,
    num_classes: int | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The validated test split as tensors, ``(None, None)`` when there is none."""
    if x_test is None:
        if y_test is not None:
            raise ValueError("y_test was given without x_test")
        return None, None
    xs = _as_tensor(x_test, "x_test")
    ys = None if y_test is None else _as_tensor(y_test, "y_test")
    if yt is not None and ys is None:
        raise ValueError("y is given, so the test split needs y_test as well")
    if yt is None and ys is not None:
        raise ValueError("y_test was given but y is None")
    if tuple(xs.shape[1:]) != tuple(xt.shape[1:]):
        raise ValueError(
            f"x_test examples have shape {tuple(xs.shape[1:])} but x examples have "
            f"shape {tuple(xt.shape[1:])}"
        )
    # An explicitly empty test split is allowed, just as the default one is.
    if xs.shape[0] > 0:
        validate_tensors(xs, ys, task=task, num_classes=num_classes, where="x_test")
    elif ys is not None and ys.shape[0] != 0:
        raise ValueError(f"y_test has {ys.shape[0]} rows but x_test has 0")
    return xs, ys


def _count_classes(yt: torch.Tensor | None, ys: torch.Tensor | None) -> int:
    """The largest label, train or test, plus one."""
    assert yt is not None  # validate_tensors rejects classification without labels
    top = int(yt.max())
    if ys is not None and ys.numel():
        top = max(top, int(ys.max()))
    return top + 1


def _copy_splits(
    xt: torch.Tensor,
    yt: torch.Tensor | None,
    xs: torch.Tensor | None,
    ys: torch.Tensor | None,
    target_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Copies on ``xt``'s device: float32 inputs, ``target_dtype`` targets, an empty default
    test split."""
    device = xt.device

    def copy(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # copy=True so the dataset never shares memory with the caller's tensors or arrays.
        return t.detach().to(device=device, dtype=dtype, copy=True)

    x_train = copy(xt, torch.float32)
    y_train = None if yt is None else copy(yt, target_dtype)
    if xs is None:
        x_te = torch.empty((0, *xt.shape[1:]), dtype=torch.float32, device=device)
        y_te = (
            None
            if yt is None
            else torch.empty((0, *yt.shape[1:]), dtype=target_dtype, device=device)
        )
    else:
        x_te = copy(xs, torch.float32)
        y_te = None if ys is None else copy(ys, target_dtype)
    return x_train, y_train, x_te, y_te


def from_tensors(
    x: Any,
    y: Any = None,
    *,
    x_test: Any = None,
    y_test: Any = None,
    task: str | None = None,
    num_classes: int | None = None,
    name: str = "user",
) -> Dataset:
    """Wrap a user's tensors (or numpy arrays) as a :class:`Dataset`.

    The tensors are validated with :func:`validate_tensors` and copied (never aliased or
    modified): inputs become float32, class labels int64, regression targets float32. The result
    lives on ``x``'s device.

    :param x: training inputs ``(N, ...)``.
    :param y: training targets, or ``None`` for unsupervised data. Regression targets may be
        ``(N,)`` or ``(N, 1)``; the latter is flattened to ``(N,)`` (so are ``y_test``'s), and any
        other shape is refused.
    :param x_test: test inputs; ``None`` gives an empty test split of shape
        ``(0, *input_shape)``.
    :param y_test: test targets; required when both ``y`` and ``x_test`` are given.
    :param task: inferred when ``None``: no ``y`` -> unsupervised, integer ``y`` ->
        classification, float ``y`` -> regression.
    :param num_classes: defaults to the largest label (train or test) plus one.
    :param name: name stored on the dataset.
    :raises ValueError: for invalid tensors or inconsistent arguments.

    Usage::

        ds = from_tensors(torch.randn(100, 4), torch.randint(0, 3, (100,)))
        ds.info.task, ds.info.num_classes   # ("classification", 3)
    """
    _check_task(task)
    xt = _as_tensor(x, "x")
    yt = None if y is None else _as_tensor(y, "y")
    task = _resolve_task(task, yt, num_classes)
    if task == "regression":
        yt = regression_vector(yt, "y")
        if y_test is not None:
            y_test = regression_vector(_as_tensor(y_test, "y_test"), "y_test")
    validate_tensors(xt, yt, task=task, num_classes=num_classes, where="x")
    xs, ys = _test_tensors(xt, yt, x_test, y_test, task, num_classes)
    if task == "classification" and num_classes is None:
        num_classes = _count_classes(yt, ys)

    target_dtype = torch.int64 if task == "classification" else torch.float32
    x_train, y_train, x_te, y_te = _copy_splits(xt, yt, xs, ys, target_dtype)
    input_shape = tuple(int(s) for s in xt.shape[1:])
    info = DataInfo(
        input_shape=input_shape,
        task=task,
        num_classes=num_classes if task == "classification" else None,
        image_shape=_image_shape(input_shape),
    )
    return Dataset(name, x_train, y_train, x_te, y_te, info, source={}, extras={})


def as_dataset(data: Dataset | torch.Tensor, y: torch.Tensor | None = None) -> Dataset:
    """``data`` itself when it is a :class:`Dataset`, else :func:`from_tensors` ``(data, y)``.

    :raises ValueError: for labels ``y`` passed beside a :class:`Dataset` (they belong in it).
    """
    if isinstance(data, Dataset):
        if y is not None:
            raise ValueError("pass labels inside the Dataset, not as y, when data is a Dataset")
        return data
    return from_tensors(data, y)


# --------------------------------------------------------------------------------------------
# Argument checks shared by the loaders' info functions
# --------------------------------------------------------------------------------------------


def check_min(name: str, value: int, minimum: int) -> None:
    """Refuse ``value < minimum`` for the argument ``name``.

    :raises ValueError: ``"<name> must be >= <minimum>, got <value>"``.
    """
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_split(num_data: int, test_fraction: float) -> tuple[int, int]:
    """Validate a split and return ``(num_train, num_test)``.

    The test split is rounded up, like scikit-learn's ``train_test_split``, so every loader
    splits the same way.

    :raises ValueError: for ``test_fraction`` outside ``(0, 1)`` or a split with an empty side.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    # Rounded up like scikit-learn's train_test_split, so all loaders split the same way.
    num_test = math.ceil(num_data * test_fraction)
    num_train = num_data - num_test
    if num_train < 1 or num_test < 1:
        raise ValueError(
            f"num_data={num_data} with test_fraction={test_fraction} leaves an empty split"
        )
    return num_train, num_test
