"""The catalog of built-in datasets: :data:`DATASETS`, :func:`list_datasets`,
:func:`dataset_info` and :func:`load`.

:data:`DATASETS` is an explicit table: each name maps to a :class:`CatalogEntry` holding the
dataset's loader and info function, imported from :mod:`zoo.data.loaders`,
:mod:`zoo.data.synthetic` and :mod:`zoo.data.tiles` (which never import the catalog). A new
dataset is one more row, written here.

Usage::

    from zoo.data.catalog import dataset_info, list_datasets, load

    list_datasets()                                  # ['classification-synthetic', ...]
    dataset_info("fashion-mnist").input_shape        # (1, 28, 28), reads no files
    ds = load("ppca-synthetic", num_data=2000, seed=1)
"""

from __future__ import annotations

import difflib
import inspect
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from zoo.data import loaders, synthetic, tiles
from zoo.data.types import DataInfo, Dataset, Parts, canonical_name
from zoo.data.validate import check_parts

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "LOAD_ARGS",
    "CatalogEntry",
    "dataset_info",
    "list_datasets",
    "load",
]

#: Name of the dataset used when none is given.
DEFAULT_DATASET = "digits"

#: Keyword arguments every loader receives from :func:`load` itself rather than from the
#: user's kwargs.
LOAD_ARGS = ("data_dir", "device")


@dataclass(frozen=True)
class CatalogEntry:
    """One dataset of the catalog: how to load it and how to describe it without loading.

    :param loader: takes keyword-only ``data_dir`` and ``device`` plus its own keyword-only
        parameters, each with a default, and returns :data:`~zoo.data.types.Parts`.
    :param info_fn: takes those same parameters (all resolved) and returns the
        :class:`~zoo.data.types.DataInfo`; it must validate them, since :func:`dataset_info`
        calls it without loading anything.
    :param defaults: the loader's own parameters and their defaults (read off its signature by
        :meth:`of`).
    """

    loader: Callable[..., Parts]
    info_fn: Callable[..., DataInfo]
    defaults: dict[str, Any]

    @classmethod
    def of(cls, loader: Callable[..., Parts], info_fn: Callable[..., DataInfo]) -> CatalogEntry:
        """The entry of ``loader`` and ``info_fn``, its defaults read off the loader's signature."""
        params = inspect.signature(loader).parameters
        defaults = {
            p.name: p.default
            for p in params.values()
            if p.name not in LOAD_ARGS and p.default is not inspect.Parameter.empty
        }
        return cls(loader, info_fn, defaults)


#: Every dataset :func:`load` knows, by name.
DATASETS: Mapping[str, CatalogEntry] = MappingProxyType(
    {
        "digits": CatalogEntry.of(loaders.load_digits, loaders.digits_info),
        "fashion-mnist": CatalogEntry.of(loaders.load_fashion_mnist, loaders.mnist_info),
        "mnist": CatalogEntry.of(loaders.load_mnist, loaders.mnist_info),
        "ppca-synthetic": CatalogEntry.of(synthetic.load_ppca, synthetic.ppca_info),
        "regression-synthetic": CatalogEntry.of(
            synthetic.load_regression, synthetic.regression_info
        ),
        "classification-synthetic": CatalogEntry.of(
            synthetic.load_classification, synthetic.classification_info
        ),
        "cluttered-tiles": CatalogEntry.of(tiles.load_cluttered_tiles, tiles.tiles_info),
    }
)


def _lookup(name: str) -> tuple[str, CatalogEntry]:
    key = canonical_name(name)
    if key in DATASETS:
        return key, DATASETS[key]
    names = list_datasets()
    close = difflib.get_close_matches(key, names, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}.{hint} Available datasets: {', '.join(names)}")


def _coerce(key: str, param: str, value: Any, default: Any) -> Any:
    """``value`` cast to the type of ``default`` (int or float), anything else as is."""
    # Coerce to the default's type so numpy scalars from configs work and source stays
    # JSON-friendly; bools are rejected because True would silently mean 1.
    if isinstance(default, int) and not isinstance(default, bool):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"dataset {key!r}: {param} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"dataset {key!r}: {param} must be a number, got {value!r}")
        return float(value)
    return value


def _resolve_kwargs(key: str, entry: CatalogEntry, kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(entry.defaults))
    if unknown:
        accepted = ", ".join(entry.defaults) or "(none)"
        raise TypeError(
            f"dataset {key!r} got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"it accepts: {accepted} (plus data_dir and device)"
        )
    return {
        param: _coerce(key, param, kwargs.get(param, default), default)
        for param, default in entry.defaults.items()
    }


def list_datasets() -> list[str]:
    """Names accepted by :func:`load` and :func:`dataset_info`, sorted."""
    return sorted(DATASETS)


def dataset_info(name: str, **kwargs: Any) -> DataInfo:
    """Static :class:`~zoo.data.types.DataInfo` of a dataset in the catalog; reads no files and
    generates nothing.

    :param name: one of :func:`list_datasets`.
    :param kwargs: the loader's keyword arguments (``data_dir`` and ``device`` are accepted and
        ignored, so the same kwargs as for :func:`load` can be passed).
    :raises ValueError: for an unknown name or invalid argument values.
    :raises TypeError: for keyword arguments the loader does not accept.

    Usage::

        info = dataset_info("ppca-synthetic", input_dim=20)
        info.input_shape    # (20,)
    """
    key, entry = _lookup(name)
    for arg in LOAD_ARGS:
        kwargs.pop(arg, None)
    return entry.info_fn(**_resolve_kwargs(key, entry, kwargs))


def load(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load a dataset of the catalog with all tensors on ``device``.

    :param name: one of :func:`list_datasets` (case-insensitive, ``_`` may stand for ``-``).
    :param data_dir: folder searched first for file-based datasets (ignored by the others).
    :param device: anything :class:`torch.device` accepts; ``None`` means CPU.
    :param kwargs: loader-specific options, e.g. ``seed=`` or ``num_data=``.
    :raises ValueError: for an unknown name (with close matches) or invalid option values.
    :raises TypeError: for options the loader does not accept (listing the accepted ones).
    :raises FileNotFoundError: when a file-based dataset cannot be found.

    Usage::

        ds = load("ppca-synthetic", num_data=2000, seed=1, device="cuda")
        ds.extras["W"].shape   # (10, 3)
        same = load(ds.source["name"], **ds.source["kwargs"])
    """
    key, entry = _lookup(name)
    params = _resolve_kwargs(key, entry, kwargs)
    info = entry.info_fn(**params)  # validates the values before any work is done
    dev = torch.device("cpu") if device is None else torch.device(device)
    parts = entry.loader(data_dir=data_dir, device=dev, **params)
    x_train, y_train, x_test, y_test, extras = check_parts(parts, info.task, info.num_classes)
    source_kwargs = dict(params)
    if data_dir is not None:
        source_kwargs["data_dir"] = os.fspath(data_dir)
    return Dataset(
        name=key,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        info=info,
        source={"name": key, "kwargs": source_kwargs},
        extras=extras,
    )
