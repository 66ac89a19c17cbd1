"""The containers every loader fills: :class:`DataInfo` (static shape and task) and
:class:`Dataset` (a train/test split of device-resident tensors), plus the helpers around them.

This is the bottom of :mod:`zoo.data`: it imports nothing else of the package.

Usage::

    from zoo.data.types import DataInfo, Dataset, fingerprint

    info = DataInfo((1, 8, 8), "classification", num_classes=10, image_shape=(8, 8))
    info.input_dim                                # 64
    fingerprint(ds.x_train, ds.y_train)           # a short hex digest of the training split
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["TASKS", "DataInfo", "Dataset", "Parts", "canonical_name", "fingerprint"]

#: The tasks a :class:`DataInfo` may declare.
TASKS = ("classification", "regression", "unsupervised")

#: What every loader returns: ``(x_train, y_train, x_test, y_test, extras)``;
#: :func:`zoo.data.load` validates them and adds the rest of the :class:`Dataset`.
Parts = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None, dict]


@dataclass(frozen=True)
class DataInfo:
    """Static description of a dataset, enough to build a model without loading any data.

    :param input_shape: shape of one example, e.g. ``(1, 8, 8)`` for digits or ``(10,)`` for
        vectors.
    :param task: one of ``"classification"``, ``"regression"``, ``"unsupervised"``.
    :param num_classes: number of classes for classification, else ``None``.
    :param image_shape: ``(H, W)`` for image sets, else ``None``.
    """

    input_shape: tuple[int, ...]
    task: str
    num_classes: int | None = None
    image_shape: tuple[int, int] | None = None

    @property
    def input_dim(self) -> int:
        """Number of scalars in one example (the product of :attr:`input_shape`)."""
        return math.prod(self.input_shape)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split held as tensors on one device.

    ``eq=False`` because element-wise tensor comparison has no single truth value; compare the
    tensors explicitly instead.

    :param name: dataset name (its name in the catalog, or the name given to
        :func:`from_tensors`).
    :param x_train: training inputs, shape ``(num_train, *info.input_shape)``, float32.
    :param y_train: training targets (int64 labels or float32 values), or ``None``.
    :param x_test: test inputs, shape ``(num_test, *info.input_shape)``; may hold zero rows.
    :param y_test: test targets, or ``None``.
    :param info: the static :class:`DataInfo`.
    :param source: ``{"name": ..., "kwargs": {...}}`` such that
        ``load(source["name"], **source["kwargs"])`` reloads the same data; ``{}`` for user
        tensors.
    :param extras: anything else, e.g. the ground truth of synthetic sets or class names.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_test: torch.Tensor
    y_test: torch.Tensor | None
    info: DataInfo
    source: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Device holding the tensors."""
        return self.x_train.device

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return int(self.x_test.shape[0])

    def to(self, device: str | torch.device) -> Dataset:
        """Return a copy with every tensor, including those in :attr:`extras`, on ``device``.

        :param device: anything :class:`torch.device` accepts.
        """
        dev = torch.device(device)
        return dataclasses.replace(
            self,
            x_train=self.x_train.to(dev),
            y_train=None if self.y_train is None else self.y_train.to(dev),
            x_test=self.x_test.to(dev),
            y_test=None if self.y_test is None else self.y_test.to(dev),
            extras=_move_tensors(self.extras, dev),
        )

    def __repr__(self) -> str:
        # The dataclass default would print tensor contents, which is unreadable for real data.
        return (
            f"Dataset(name={self.name!r}, num_train={self.num_train}, num_test={self.num_test}, "
            f"input_shape={self.info.input_shape}, task={self.info.task!r}, "
            f"num_classes={self.info.num_classes}, device={str(self.device)!r})"
        )


def fingerprint(*tensors: torch.Tensor | None) -> str:
    """A short hash of the tensors' shapes, dtypes and values (``None`` counts as absent).

    :func:`zoo.fit` records it for the training split, so that :func:`zoo.compare_models` can tell
    whether models were fitted on the same data.
    """
    import hashlib

    digest = hashlib.blake2b(digest_size=12)
    for t in tensors:
        if t is None:
            digest.update(b"none")
            continue
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy().reshape(-1).view("uint8"))  # the bytes, without a copy
    return digest.hexdigest()


def _move_tensors(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _move_tensors(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move_tensors(v, device) for v in obj)
    return obj


def canonical_name(name: str) -> str:
    """The catalog's spelling of a dataset name: stripped, lower case, ``-`` for ``_``.

    :raises TypeError: when ``name`` is not a string.

    Usage::

        canonical_name(" Fashion_MNIST")   # "fashion-mnist"
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    return name.strip().lower().replace("_", "-")
