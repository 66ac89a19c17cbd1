"""Datasets as device-resident tensors.

Every dataset is loaded whole into memory and returned as a :class:`Dataset` whose tensors already
live on the requested device: the sets in this zoo are small enough that streaming from disk would
only add overhead to the training loops.

Built-in datasets (see :func:`list_datasets`):

* ``digits`` -- scikit-learn's 8x8 handwritten digits (ships with scikit-learn, the default).
* ``fashion-mnist`` and ``mnist`` -- read from the four IDX files on disk (never downloaded).
* ``ppca-synthetic``, ``regression-synthetic``, ``classification-synthetic`` -- generated from a
  seed, with the ground truth kept in :attr:`Dataset.extras`.
* ``cluttered-tiles`` -- grids of tiles cut from digits or Fashion-MNIST, one tile holding the
  object and the others clutter, generated from a seed; the object's tile is kept in
  :attr:`Dataset.extras` for evaluation only (the task of :mod:`zoo.models.attention`).

User data goes through :func:`from_tensors`, or, from files, :func:`load` given the path of a
``.csv`` or ``.npz`` file (:func:`load_file`; its rules on splits, tasks, labels and fingerprints
are in :mod:`zoo.data.tabular`).

The package, top to bottom (a module imports only from those below it):

* :mod:`zoo.data.catalog` -- the table of datasets, :func:`list_datasets`, :func:`dataset_info`,
  :func:`load`.
* :mod:`zoo.data.tiles` -- the cluttered tiles (:func:`compose_tiles`).
* :mod:`zoo.data.loaders` (digits, Fashion-MNIST, MNIST), :mod:`zoo.data.synthetic` and
  :mod:`zoo.data.tabular` (a user's CSV and NPZ files).
* :mod:`zoo.data.files` (where the IDX files are found), :mod:`zoo.data.idx` (the IDX format)
  and :mod:`zoo.data.validate` (:func:`validate_tensors`, :func:`from_tensors`).
* :mod:`zoo.data.types` -- :class:`DataInfo`, :class:`Dataset`, :func:`fingerprint`.

The names below are re-exported from those modules. :data:`DEBIAN_FASHION_MNIST_DIR` is read
where it is used, in :mod:`zoo.data.files`: monkeypatch it there.

Usage::

    from zoo import data

    ds = data.load("digits", device="cpu")
    ds.x_train.shape              # torch.Size([1437, 1, 8, 8])
    data.dataset_info("fashion-mnist").input_shape   # (1, 28, 28), reads no files
"""

from zoo.data.catalog import DEFAULT_DATASET, dataset_info, list_datasets, load, uses_data_dir
from zoo.data.files import DEBIAN_FASHION_MNIST_DIR, ZOO_DATA_ENV, find_idx_files
from zoo.data.idx import IDXFormatError, read_idx, write_idx
from zoo.data.tabular import load_file
from zoo.data.tiles import TILE_SOURCES, compose_tiles
from zoo.data.types import TASKS, DataInfo, Dataset, fingerprint
from zoo.data.validate import as_dataset, from_tensors, regression_vector, validate_tensors

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "DEFAULT_DATASET",
    "TASKS",
    "TILE_SOURCES",
    "ZOO_DATA_ENV",
    "DataInfo",
    "Dataset",
    "IDXFormatError",
    "as_dataset",
    "compose_tiles",
    "dataset_info",
    "find_idx_files",
    "fingerprint",
    "from_tensors",
    "list_datasets",
    "load",
    "load_file",
    "read_idx",
    "regression_vector",
    "uses_data_dir",
    "validate_tensors",
    "write_idx",
]
