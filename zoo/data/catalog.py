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

import dataclasses
import difflib
import inspect
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from zoo.data import loaders, synthetic, tabular, tiles
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
    "uses_data_dir",
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
    :param reads_files: whether, with the given options, the loader reads files (only then does
        :func:`load` accept ``data_dir``).
    :param shape_from_data: whether :func:`load` takes the input shape from the data read.
    """

    loader: Callable[..., Parts]
    info_fn: Callable[..., DataInfo]
    defaults: dict[str, Any]
    reads_files: Callable[[dict[str, Any]], bool] = lambda params: False
    shape_from_data: bool = False

    @classmethod
    def of(
        cls,
        loader: Callable[..., Parts],
        info_fn: Callable[..., DataInfo],
        reads_files: Callable[[dict[str, Any]], bool] | None = None,
        shape_from_data: bool = False,
    ) -> CatalogEntry:
        """The entry of ``loader`` and ``info_fn``, its defaults read off the loader's signature.

        :param reads_files: given the resolved options, whether the loader reads files (and so
            takes ``data_dir``); never, when ``None``.
        :param shape_from_data: the input shape is that of the data read (IDX images of any
            size), :func:`dataset_info`'s is the usual one.
        """
        params = inspect.signature(loader).parameters
        defaults = {
            p.name: p.default
            for p in params.values()
            if p.name not in LOAD_ARGS and p.default is not inspect.Parameter.empty
        }
        reads = reads_files or (lambda params: False)
        return cls(loader, info_fn, defaults, reads, shape_from_data)


def _always(params: dict[str, Any]) -> bool:
    return True


#: Every dataset :func:`load` knows, by name.
DATASETS: Mapping[str, CatalogEntry] = MappingProxyType(
    {
        "digits": CatalogEntry.of(loaders.load_digits, loaders.digits_info),
        "fashion-mnist": CatalogEntry.of(
            loaders.load_fashion_mnist, loaders.mnist_info, _always, shape_from_data=True
        ),
        "mnist": CatalogEntry.of(
            loaders.load_mnist, loaders.mnist_info, _always, shape_from_data=True
        ),
        "ppca-synthetic": CatalogEntry.of(synthetic.load_ppca, synthetic.ppca_info),
        "regression-synthetic": CatalogEntry.of(
            synthetic.load_regression, synthetic.regression_info
        ),
        "classification-synthetic": CatalogEntry.of(
            synthetic.load_classification, synthetic.classification_info
        ),
        "cluttered-tiles": CatalogEntry.of(
            tiles.load_cluttered_tiles, tiles.tiles_info, lambda p: p["source"] != "digits"
        ),
    }
)


def _lookup(name: str) -> tuple[str, CatalogEntry]:
    key = canonical_name(name)
    if key in DATASETS:
        return key, DATASETS[key]
    names = list_datasets()
    close = difflib.get_close_matches(key, names, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown dataset {name!r}.{hint} Available datasets: {', '.join(names)}; or a path to "
        f"a {' or '.join(tabular.FILE_SUFFIXES)} file"
    )


def _check_file_options(key: str, entry: CatalogEntry, kwargs: dict[str, Any]) -> None:
    """Refuse the options of files given for a dataset of the catalog that does not take them."""
    for option, flag in tabular.FILE_OPTIONS.items():
        if option in kwargs and option not in entry.defaults:
            raise ValueError(
                f"{option}= ({flag}) does not apply to the dataset {key!r}: it applies to "
                f"{' and '.join(tabular.FILE_SUFFIXES)} files"
                + (" and to the datasets that take it" if option == "test_fraction" else "")
            )


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


def uses_data_dir(name: str, **kwargs: Any) -> bool:
    """Whether :func:`load` takes ``data_dir`` for the dataset ``name`` with options ``kwargs``
    (it refuses it elsewhere): the IDX sets and the cluttered tiles cut from them.

    Usage::

        uses_data_dir("mnist"), uses_data_dir("digits")      # True, False
        uses_data_dir("cluttered-tiles", source="mnist")     # True
    """
    if tabular.is_file_name(name):
        return False
    key, entry = _lookup(name)
    for arg in LOAD_ARGS:
        kwargs.pop(arg, None)
    return entry.reads_files(_resolve_kwargs(key, entry, kwargs))


def list_datasets() -> list[str]:
    """Names accepted by :func:`load` and :func:`dataset_info`, sorted."""
    return sorted(DATASETS)


def dataset_info(name: str, **kwargs: Any) -> DataInfo:
    """Static :class:`~zoo.data.types.DataInfo` of a dataset in the catalog; reads no files and
    generates nothing (but for a file's path, which is loaded).

    :param name: one of :func:`list_datasets`.
    :param kwargs: the loader's keyword arguments (``data_dir`` and ``device`` are accepted and
        ignored, so the same kwargs as for :func:`load` can be passed).
    :raises ValueError: for an unknown name or invalid argument values.
    :raises TypeError: for keyword arguments the loader does not accept.

    Usage::

        info = dataset_info("ppca-synthetic", input_dim=20)
        info.input_shape    # (20,)
    """
    if tabular.is_file_name(name):
        return load(name, **kwargs).info
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

    :param name: one of :func:`list_datasets` (case-insensitive, ``_`` may stand for ``-``), or
        the path of a ``.csv`` or ``.npz`` file (any name with that suffix or a path separator),
        loaded by :func:`zoo.data.tabular.load_file` with ``kwargs``.
    :param data_dir: folder searched first for the IDX files of fashion-mnist and mnist (and the
        cluttered tiles cut from them); refused by every other dataset and by files.
    :param device: anything :class:`torch.device` accepts; ``None`` means CPU.
    :param kwargs: loader-specific options, e.g. ``seed=`` or ``num_data=``; for a file
        ``target``, ``test_fraction``, ``split_seed``, ``task`` and ``fingerprint``.
    :raises ValueError: for an unknown name (with close matches), invalid option values, an
        option that does not apply to the dataset (``data_dir``, the file options), or a bad
        file.
    :raises TypeError: for options the loader does not accept (listing the accepted ones).
    :raises FileNotFoundError: when a file-based dataset cannot be found.

    Usage::

        ds = load("ppca-synthetic", num_data=2000, seed=1, device="cuda")
        ds.extras["W"].shape   # (10, 3)
        same = load(ds.source["name"], **ds.source["kwargs"])
        mine = load("data/houses.csv", target="price", test_fraction=0.25)
    """
    if tabular.is_file_name(name):
        if data_dir is not None:
            raise ValueError(
                f"data_dir= (--data-dir) does not apply to a file ({name}); it applies to "
                "fashion-mnist, mnist and the cluttered tiles cut from them"
            )
        return tabular.load_file(name, device=device, **kwargs)
    key, entry = _lookup(name)
    _check_file_options(key, entry, kwargs)
    params = _resolve_kwargs(key, entry, kwargs)
    if data_dir is not None and not entry.reads_files(params):
        raise ValueError(
            f"data_dir= (--data-dir) does not apply to the dataset {key!r}, which reads no "
            "files; it applies to fashion-mnist, mnist and the cluttered tiles cut from them"
        )
    info = entry.info_fn(**params)  # validates the values before any work is done
    dev = torch.device("cpu") if device is None else torch.device(device)
    parts = entry.loader(data_dir=data_dir, device=dev, **params)
    if entry.shape_from_data:  # e.g. IDX images of another size than the usual 28x28
        shape = tuple(int(s) for s in parts[0].shape[1:])
        image = (shape[1], shape[2]) if len(shape) == 3 else None
        info = dataclasses.replace(info, input_shape=shape, image_shape=image)
    x_train, y_train, x_test, y_test, extras = check_parts(parts, info.task, info.num_classes)
    source_kwargs = dict(params)
    if data_dir is not None:  # absolute: a checkpoint reloads it from any working folder
        source_kwargs["data_dir"] = os.path.abspath(os.fspath(data_dir))
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
