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

User data goes through :func:`from_tensors`.

Usage::

    from zoo import data

    ds = data.load("digits", device="cpu")
    ds.x_train.shape              # torch.Size([1437, 1, 8, 8])
    data.dataset_info("fashion-mnist").input_shape   # (1, 28, 28), reads no files
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import inspect
import math
import numbers
import os
import pathlib
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

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
    "read_idx",
    "validate_tensors",
    "write_idx",
]

#: Name of the dataset used when none is given.
DEFAULT_DATASET = "digits"

#: The tasks a :class:`DataInfo` may declare.
TASKS = ("classification", "regression", "unsupervised")

#: Environment variable naming extra data roots (``os.pathsep``-separated).
ZOO_DATA_ENV = "ZOO_DATA"

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files. Looked up at call time,
#: so tests may monkeypatch it.
DEBIAN_FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


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

    :param name: dataset name (the registered loader name, or the name given to
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

    :func:`zoo.fit` records it for the training split, so that :func:`zoo.compare` can tell
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
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def as_dataset(data: Dataset | torch.Tensor, y: torch.Tensor | None = None) -> Dataset:
    """``data`` itself when it is a :class:`Dataset`, else :func:`from_tensors` ``(data, y)``.

    :raises ValueError: for labels ``y`` passed beside a :class:`Dataset` (they belong in it).
    """
    if isinstance(data, Dataset):
        if y is not None:
            raise ValueError("pass labels inside the Dataset, not as y, when data is a Dataset")
        return data
    return from_tensors(data, y)


def _move_tensors(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _move_tensors(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move_tensors(v, device) for v in obj)
    return obj


# --------------------------------------------------------------------------------------------
# Validation and user tensors
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
    bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
    count, first = _bad_rows(bad)
    if count:
        raise ValueError(
            f"{name} has non-finite values (NaN or inf) in {count} of {t.shape[0]} rows; "
            f"first bad row: {first}"
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

    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if num_classes is not None and (
        not isinstance(num_classes, numbers.Integral)
        or isinstance(num_classes, bool)
        or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")

    if y is None:
        if task in ("classification", "regression"):
            raise ValueError(f"task {task!r} needs targets, but {yname} is None")
        return

    yt = _as_tensor(y, yname)
    if yt.dtype.is_complex:
        raise ValueError(f"{yname} must be real-valued, got dtype {yt.dtype}")
    if yt.dim() == 0:
        raise ValueError(f"{yname} must have one entry per example, got a scalar")
    if yt.shape[0] != xt.shape[0]:
        raise ValueError(f"{yname} has {yt.shape[0]} rows but {where} has {xt.shape[0]}")
    _check_finite(yt, yname)

    if (task or _infer_task(yt)) != "classification":
        return
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


def _image_shape(input_shape: tuple[int, ...]) -> tuple[int, int] | None:
    # Only (C, H, W) is unambiguous; a 2-D example could as well be a sequence of vectors.
    if len(input_shape) == 3:
        return (input_shape[1], input_shape[2])
    return None


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
    :param y: training targets, or ``None`` for unsupervised data.
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
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    xt = _as_tensor(x, "x")
    yt = None if y is None else _as_tensor(y, "y")
    if task is None:
        task = _infer_task(yt)
    if num_classes is not None and task != "classification":
        raise ValueError(
            f"num_classes only applies to classification, but the task is {task!r}; "
            "pass task='classification' (and integer labels) to classify"
        )
    validate_tensors(xt, yt, task=task, num_classes=num_classes, where="x")

    if x_test is None:
        if y_test is not None:
            raise ValueError("y_test was given without x_test")
        xs = None
        ys = None
    else:
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

    if task == "classification" and num_classes is None:
        assert yt is not None  # validate_tensors rejects classification without labels
        top = int(yt.max())
        if ys is not None and ys.numel():
            top = max(top, int(ys.max()))
        num_classes = top + 1

    device = xt.device
    target_dtype = torch.int64 if task == "classification" else torch.float32

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

    input_shape = tuple(int(s) for s in xt.shape[1:])
    info = DataInfo(
        input_shape=input_shape,
        task=task,
        num_classes=num_classes if task == "classification" else None,
        image_shape=_image_shape(input_shape),
    )
    return Dataset(name, x_train, y_train, x_te, y_te, info, source={}, extras={})


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------


class IDXFormatError(ValueError):
    """An IDX file is corrupt, truncated, or does not hold what the loader expects."""


# IDX type code -> numpy dtype. The payload is big-endian whatever the machine.
_IDX_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_IDX_DTYPES: dict[np.dtype, int] = {dt: code for code, dt in _IDX_CODES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: pathlib.Path) -> bytes:
    with open(path, "rb") as fh:  # FileNotFoundError propagates as is
        raw = fh.read()
    # Sniff the gzip magic too, so a compressed file without the .gz suffix still reads.
    if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            raise IDXFormatError(f"{path}: corrupt or truncated gzip stream ({err})") from err
    return raw


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed) into a native-endian numpy array.

    :param path: file to read; compression is detected from the ``.gz`` suffix or the gzip
        magic bytes.
    :raises FileNotFoundError: when the file does not exist.
    :raises IDXFormatError: for a bad magic number, a header or payload that does not match
        the declared dimensions, or a corrupt gzip stream.

    Usage::

        images = read_idx("train-images-idx3-ubyte.gz")   # uint8, shape (60000, 28, 28)
    """
    path = pathlib.Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: file is {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{path}: bad magic number {data[:4].hex()} (an IDX file starts with two zero bytes)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_CODES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_CODES)
        raise IDXFormatError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise IDXFormatError(f"{path}: header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXFormatError(
            f"{path}: header declares {ndim} dimensions ({header_len} bytes) but the file has "
            f"only {len(data)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _IDX_CODES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    found = len(data) - header_len
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{path}: payload {problem}: expected {expected} bytes for dims {dims} of {dtype}, "
            f"found {found}"
        )
    big_endian = dtype.newbyteorder(">")
    array = np.frombuffer(data, dtype=big_endian, count=count, offset=header_len)
    # astype copies, which also makes the result writable (frombuffer over bytes is read-only).
    return array.astype(dtype.newbyteorder("=")).reshape(dims)


def write_idx(path: str | os.PathLike[str], array: Any) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    :param path: destination file (its folder must exist).
    :param array: array-like of dtype uint8, int8, int16, int32, float32 or float64, with 1 to
        255 dimensions.
    :raises ValueError: for an unsupported dtype or shape.

    Usage::

        write_idx("train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    """
    path = pathlib.Path(path)
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=")
    if native not in _IDX_DTYPES:
        names = ", ".join(str(dt) for dt in _IDX_DTYPES)
        raise ValueError(
            f"write_idx: dtype {arr.dtype} has no IDX type code; supported: {names} "
            "(cast first, e.g. labels.astype(np.uint8))"
        )
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1 to 255 dimensions, got {arr.ndim}")
    if any(s >= 2**32 for s in arr.shape):
        raise ValueError(f"write_idx: dimension too large for IDX in shape {arr.shape}")
    header = bytes([0, 0, _IDX_DTYPES[native], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=native.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        # mtime=0 keeps the output byte-identical across runs.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(header + payload)
    else:
        with open(path, "wb") as fh:
            fh.write(header + payload)


# Basenames of the four files; the dotted spelling is how some mirrors (e.g. Kaggle) name them.
_IDX_BASENAMES: dict[str, tuple[str, ...]] = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

# Folder name torchvision uses under its root (<root>/<folder>/raw).
_TORCHVISION_FOLDERS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}


def _data_roots(data_dir: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    roots = []
    if data_dir is not None:
        roots.append(pathlib.Path(data_dir).expanduser())
    env = os.environ.get(ZOO_DATA_ENV, "")
    roots.extend(pathlib.Path(p).expanduser() for p in env.split(os.pathsep) if p)
    return roots


def _idx_candidate_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[pathlib.Path]:
    dirs: list[pathlib.Path] = []
    for root in _data_roots(data_dir):
        dirs += [root, root / name, root / _TORCHVISION_FOLDERS[name] / "raw"]
    if name == "fashion-mnist":
        dirs.append(pathlib.Path(DEBIAN_FASHION_MNIST_DIR))
    return list(dict.fromkeys(dirs))  # drop duplicates, keep the search order


def _files_in(folder: pathlib.Path) -> dict[str, pathlib.Path] | None:
    found = {}
    for key, basenames in _IDX_BASENAMES.items():
        # The uncompressed file wins when both exist: it reads faster.
        hits = [
            folder / f"{base}{ext}"
            for ext in ("", ".gz")
            for base in basenames
            if (folder / f"{base}{ext}").is_file()
        ]
        if not hits:
            return None
        found[key] = hits[0]
    return found


def _missing_data_message(name: str, searched: Sequence[pathlib.Path]) -> str:
    folders = "\n".join(f"  - {d}" for d in searched) or "  (none)"
    files = ", ".join(names[0] for names in _IDX_BASENAMES.values())
    lines = [
        f"could not find the {name} IDX files ({files}, each raw or .gz) in any of:",
        folders,
        "A folder counts only if it holds all four files.",
        "To get the data:",
    ]
    if name == "fashion-mnist":
        lines.append(
            "  - `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; the files land in "
            f"{DEBIAN_FASHION_MNIST_DIR}), or"
        )
    else:
        lines.append(
            "  - MNIST cannot be downloaded here: supply the files yourself, in a plain folder "
            "or in torchvision's layout <root>/MNIST/raw/, and"
        )
    lines.append(
        "  - put the four IDX files in a folder and pass --data-dir DIR (CLI) or data_dir=DIR, "
        f"or set {ZOO_DATA_ENV}=DIR; DIR, DIR/{name}/ and "
        f"DIR/{_TORCHVISION_FOLDERS[name]}/raw/ are all searched."
    )
    return "\n".join(lines)


def find_idx_files(
    name: str, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, pathlib.Path]:
    """Locate the four IDX files of ``"fashion-mnist"`` or ``"mnist"``.

    Search order: ``data_dir``, then each root in ``$ZOO_DATA``; for every root ``<root>``,
    ``<root>/<name>/`` and torchvision's ``<root>/FashionMNIST/raw/`` (resp. ``MNIST/raw``)
    are tried too. Fashion-MNIST finally falls back to :data:`DEBIAN_FASHION_MNIST_DIR`. The
    first folder holding all four files wins.

    :param name: ``"fashion-mnist"`` or ``"mnist"``.
    :param data_dir: optional folder searched first.
    :returns: paths keyed ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.
    :raises FileNotFoundError: listing every folder searched and how to get the data.
    """
    key = _canonical(name)
    if key not in _TORCHVISION_FOLDERS:
        raise ValueError(
            f"find_idx_files: {name!r} is not an IDX dataset; use one of "
            f"{', '.join(_TORCHVISION_FOLDERS)}"
        )
    searched = _idx_candidate_dirs(key, data_dir)
    for folder in searched:
        files = _files_in(folder)
        if files is not None:
            return files
    raise FileNotFoundError(_missing_data_message(key, searched))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

# (x_train, y_train, x_test, y_test, extras), what every loader returns; load() adds the rest.
_Parts = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None, dict]


@dataclass(frozen=True)
class _Entry:
    loader: Callable[..., _Parts]
    info_fn: Callable[..., DataInfo]
    defaults: dict[str, Any]


_REGISTRY: dict[str, _Entry] = {}

# Keyword arguments every loader receives from load() itself rather than from the user's kwargs.
_LOAD_ARGS = ("data_dir", "device")


def _register(name: str, info_fn: Callable[..., DataInfo]) -> Callable[[Callable], Callable]:
    """Register a loader under ``name``.

    The loader takes keyword-only ``data_dir`` and ``device`` plus its own keyword-only
    parameters with defaults; ``info_fn`` takes those same parameters (all resolved) and must
    validate them, since :func:`dataset_info` calls it without loading anything.
    """

    def decorate(loader: Callable[..., _Parts]) -> Callable[..., _Parts]:
        params = inspect.signature(loader).parameters
        defaults = {
            p.name: p.default
            for p in params.values()
            if p.name not in _LOAD_ARGS and p.default is not inspect.Parameter.empty
        }
        _REGISTRY[name] = _Entry(loader, info_fn, defaults)
        return loader

    return decorate


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    return name.strip().lower().replace("_", "-")


def _lookup(name: str) -> tuple[str, _Entry]:
    key = _canonical(name)
    if key in _REGISTRY:
        return key, _REGISTRY[key]
    names = list_datasets()
    close = difflib.get_close_matches(key, names, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}.{hint} Available datasets: {', '.join(names)}")


def _resolve_kwargs(key: str, entry: _Entry, kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(entry.defaults))
    if unknown:
        accepted = ", ".join(entry.defaults) or "(none)"
        raise TypeError(
            f"dataset {key!r} got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"it accepts: {accepted} (plus data_dir and device)"
        )
    resolved = {}
    for param, default in entry.defaults.items():
        value = kwargs.get(param, default)
        # Coerce to the default's type so numpy scalars from configs work and source stays
        # JSON-friendly; bools are rejected because True would silently mean 1.
        if isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"dataset {key!r}: {param} must be an integer, got {value!r}")
            value = int(value)
        elif isinstance(default, float):
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"dataset {key!r}: {param} must be a number, got {value!r}")
            value = float(value)
        resolved[param] = value
    return resolved


def list_datasets() -> list[str]:
    """Names accepted by :func:`load` and :func:`dataset_info`, sorted."""
    return sorted(_REGISTRY)


def dataset_info(name: str, **kwargs: Any) -> DataInfo:
    """Static :class:`DataInfo` of a registered dataset; reads no files and generates nothing.

    :param name: registered dataset name.
    :param kwargs: the loader's keyword arguments (``data_dir`` and ``device`` are accepted and
        ignored, so the same kwargs as for :func:`load` can be passed).
    :raises ValueError: for an unknown name or invalid argument values.
    :raises TypeError: for keyword arguments the loader does not accept.

    Usage::

        info = dataset_info("ppca-synthetic", input_dim=20)
        info.input_shape    # (20,)
    """
    key, entry = _lookup(name)
    for arg in _LOAD_ARGS:
        kwargs.pop(arg, None)
    return entry.info_fn(**_resolve_kwargs(key, entry, kwargs))


def load(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load a registered dataset with all tensors on ``device``.

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
    x_train, y_train, x_test, y_test, extras = entry.loader(data_dir=data_dir, device=dev, **params)
    validate_tensors(
        x_train, y_train, task=info.task, num_classes=info.num_classes, where="x_train"
    )
    validate_tensors(x_test, y_test, task=info.task, num_classes=info.num_classes, where="x_test")
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


# --------------------------------------------------------------------------------------------
# Argument checks shared by the info functions
# --------------------------------------------------------------------------------------------


def _check_min(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_split(num_data: int, test_fraction: float) -> tuple[int, int]:
    """Validate a split and return ``(num_train, num_test)``."""
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


# --------------------------------------------------------------------------------------------
# Loaders: scikit-learn digits
# --------------------------------------------------------------------------------------------

_DIGIT_NAMES = [str(i) for i in range(10)]


def _digits_info(*, test_fraction: float, seed: int) -> DataInfo:
    _check_split(1797, test_fraction)
    _check_min("seed", seed, 0)
    return DataInfo((1, 8, 8), "classification", num_classes=10, image_shape=(8, 8))


@_register("digits", _digits_info)
def _load_digits(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> _Parts:
    # Imported lazily: scikit-learn is slow to import and only this loader needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        bunch.data,
        bunch.target,
        test_size=test_fraction,
        random_state=seed,
        stratify=bunch.target,
    )

    def images(a: np.ndarray) -> torch.Tensor:
        # Pixel intensities are 0..16 in this dataset.
        return torch.from_numpy(a / 16.0).to(device=device, dtype=torch.float32).view(-1, 1, 8, 8)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device=device, dtype=torch.int64)

    extras = {"class_names": list(_DIGIT_NAMES)}
    return images(x_tr), labels(y_tr), images(x_te), labels(y_te), extras


# --------------------------------------------------------------------------------------------
# Loaders: MNIST-style IDX sets
# --------------------------------------------------------------------------------------------

_FASHION_MNIST_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _mnist_info() -> DataInfo:
    return DataInfo((1, 28, 28), "classification", num_classes=10, image_shape=(28, 28))


def _read_split(
    images_path: pathlib.Path, labels_path: pathlib.Path, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise IDXFormatError(
            f"{images_path}: expected 3-D images (N, 28, 28), got shape {images.shape}"
        )
    if images.shape[1:] != (28, 28):
        raise IDXFormatError(f"{images_path}: expected 28x28 images, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise IDXFormatError(f"{images_path}: expected unsigned byte images, got {images.dtype}")
    if labels.ndim != 1:
        raise IDXFormatError(f"{labels_path}: expected 1-D labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise IDXFormatError(f"{labels_path}: expected integer labels, got {labels.dtype}")
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise IDXFormatError(
            f"{labels_path}: {bad.size} labels outside 0..9, first at index {bad[0]} "
            f"(value {labels[bad[0]]})"
        )
    # Move the uint8 pixels before converting: a quarter of the bytes to transfer.
    x = torch.from_numpy(images).to(device).unsqueeze(1).to(torch.float32).div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    return x, y


def _load_idx_dataset(
    name: str, data_dir: str | os.PathLike[str] | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    files = find_idx_files(name, data_dir)
    x_train, y_train = _read_split(files["train_images"], files["train_labels"], device)
    x_test, y_test = _read_split(files["test_images"], files["test_labels"], device)
    return x_train, y_train, x_test, y_test


@_register("fashion-mnist", _mnist_info)
def _load_fashion_mnist(*, data_dir: str | os.PathLike[str] | None, device: torch.device) -> _Parts:
    parts = _load_idx_dataset("fashion-mnist", data_dir, device)
    return (*parts, {"class_names": list(_FASHION_MNIST_NAMES)})


@_register("mnist", _mnist_info)
def _load_mnist(*, data_dir: str | os.PathLike[str] | None, device: torch.device) -> _Parts:
    parts = _load_idx_dataset("mnist", data_dir, device)
    return (*parts, {"class_names": list(_DIGIT_NAMES)})


# --------------------------------------------------------------------------------------------
# Loaders: synthetic sets with known ground truth
# --------------------------------------------------------------------------------------------
# All are drawn in float64 on the CPU from a local generator, so the data are identical on every
# device and the global RNG state is never touched; only the final tensors are moved.


def _split_rows(
    x: torch.Tensor, y: torch.Tensor | None, num_train: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    # Rows are i.i.d., so a contiguous split is as random as a shuffled one.
    x = x.to(device=device, dtype=torch.float32)
    if y is not None:
        y = y.to(device=device, dtype=torch.int64 if not y.is_floating_point() else torch.float32)
    return (
        x[:num_train].clone(),
        None if y is None else y[:num_train].clone(),
        x[num_train:].clone(),
        None if y is None else y[num_train:].clone(),
    )


def _ppca_info(
    *,
    num_data: int,
    input_dim: int,
    latent_dim: int,
    noise_std: float,
    test_fraction: float,
    seed: int,
) -> DataInfo:
    _check_min("num_data", num_data, 2)
    _check_min("input_dim", input_dim, 1)
    _check_min("latent_dim", latent_dim, 1)
    if latent_dim > input_dim:
        raise ValueError(f"latent_dim ({latent_dim}) must not exceed input_dim ({input_dim})")
    if not (noise_std > 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be positive and finite, got {noise_std}")
    _check_split(num_data, test_fraction)
    _check_min("seed", seed, 0)
    return DataInfo((input_dim,), "unsupervised")


@_register("ppca-synthetic", _ppca_info)
def _load_ppca(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    num_data: int = 1000,
    input_dim: int = 10,
    latent_dim: int = 3,
    noise_std: float = 0.5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> _Parts:
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    # Orthonormal directions scaled by a geometric sequence 3, 2.5, 2.08, ...: distinct column
    # norms make the principal axes (and so the latent dimensions) identifiable up to sign.
    q, _ = torch.linalg.qr(torch.randn(input_dim, latent_dim, generator=gen, dtype=f64))
    scales = 3.0 * (5.0 / 6.0) ** torch.arange(latent_dim, dtype=f64)
    w = q * scales
    mu = torch.randn(input_dim, generator=gen, dtype=f64) + 1.0
    z = torch.randn(num_data, latent_dim, generator=gen, dtype=f64)
    eps = torch.randn(num_data, input_dim, generator=gen, dtype=f64)
    x = z @ w.T + mu + noise_std * eps
    num_train, _ = _check_split(num_data, test_fraction)
    x_train, _, x_test, _ = _split_rows(x, None, num_train, device)
    extras = {
        "W": w.to(device),
        "mu": mu.to(device),
        "sigma2": torch.tensor(noise_std**2, dtype=f64, device=device),
    }
    return x_train, None, x_test, None, extras


def _regression_info(
    *, num_data: int, input_dim: int, noise_std: float, test_fraction: float, seed: int
) -> DataInfo:
    _check_min("num_data", num_data, 2)
    _check_min("input_dim", input_dim, 1)
    if not (noise_std >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be non-negative and finite, got {noise_std}")
    _check_split(num_data, test_fraction)
    _check_min("seed", seed, 0)
    return DataInfo((input_dim,), "regression")


@_register("regression-synthetic", _regression_info)
def _load_regression(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    num_data: int = 500,
    input_dim: int = 5,
    noise_std: float = 0.3,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> _Parts:
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    w = torch.randn(input_dim, generator=gen, dtype=f64)
    b = torch.randn((), generator=gen, dtype=f64)
    x = torch.randn(num_data, input_dim, generator=gen, dtype=f64)
    y = x @ w + b + noise_std * torch.randn(num_data, generator=gen, dtype=f64)
    num_train, _ = _check_split(num_data, test_fraction)
    parts = _split_rows(x, y, num_train, device)
    extras = {
        "w": w.to(device),
        "b": b.to(device),
        "noise_std": torch.tensor(noise_std, dtype=f64, device=device),
    }
    return (*parts, extras)


def _classification_info(
    *,
    num_data: int,
    input_dim: int,
    num_classes: int,
    test_fraction: float,
    seed: int,
) -> DataInfo:
    _check_min("num_data", num_data, 2)
    _check_min("input_dim", input_dim, 1)
    _check_min("num_classes", num_classes, 2)
    _check_split(num_data, test_fraction)
    _check_min("seed", seed, 0)
    return DataInfo((input_dim,), "classification", num_classes=num_classes)


@_register("classification-synthetic", _classification_info)
def _load_classification(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    num_data: int = 500,
    input_dim: int = 5,
    num_classes: int = 3,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> _Parts:
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    # Weights of scale 2 give logits spread enough that the classes are learnable but overlap.
    w = 2.0 * torch.randn(input_dim, num_classes, generator=gen, dtype=f64)
    b = torch.randn(num_classes, generator=gen, dtype=f64)
    x = torch.randn(num_data, input_dim, generator=gen, dtype=f64)
    probs = torch.softmax(x @ w + b, dim=-1)
    y = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    num_train, _ = _check_split(num_data, test_fraction)
    parts = _split_rows(x, y, num_train, device)
    extras = {"W": w.to(device), "b": b.to(device)}
    return (*parts, extras)


# --------------------------------------------------------------------------------------------
# Loaders: cluttered tiles, a task for attention as a latent variable
# --------------------------------------------------------------------------------------------

#: Image sets the cluttered tiles can be cut from, and the side of one tile for each.
TILE_SOURCES = {"digits": 8, "fashion-mnist": 28, "mnist": 28}


def _tiles_info(
    *,
    source: str,
    grid: int,
    clutter: int,
    fragment: float,
    num_train: int,
    num_test: int,
    seed: int,
) -> DataInfo:
    if source not in TILE_SOURCES:
        raise ValueError(f"source must be one of {', '.join(TILE_SOURCES)}, got {source!r}")
    _check_min("grid", grid, 2)
    _check_min("clutter", clutter, 0)
    if not 0.0 < fragment < 1.0:
        raise ValueError(f"fragment must lie strictly between 0 and 1, got {fragment}")
    _check_min("num_train", num_train, 1)
    _check_min("num_test", num_test, 1)
    _check_min("seed", seed, 0)
    side = grid * TILE_SOURCES[source]
    return DataInfo((1, side, side), "classification", num_classes=10, image_shape=(side, side))


def compose_tiles(
    images: torch.Tensor,
    num: int,
    grid: int,
    clutter: int,
    fragment: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``num`` cluttered grids of ``grid x grid`` tiles from the square ``images``.

    One tile, chosen uniformly, holds a whole image (the object); every other tile holds
    ``clutter`` square fragments, of side ``round(fragment * T)``, cut at random places from
    random images other than the object and pasted at random places (overlaps keep the brighter
    pixel).  The clutter has the strokes and intensities of real objects, so the label cannot be
    read off a single pixel and the model has to find the object.

    :param images: ``(M, T, T)`` source images.
    :returns: the grids ``(num, 1, grid T, grid T)``, the object's tile ``(num,)`` (row-major)
        and the object's index into ``images`` ``(num,)``.
    """
    m, t, _ = images.shape
    k = grid * grid
    obj = torch.randint(m, (num,), generator=generator)
    loc = torch.randint(k, (num,), generator=generator)
    canvas = images.new_zeros(num * k, t, t)
    if clutter > 0 and m > 1:
        f = min(t, max(1, round(fragment * t)))
        n = num * k * clutter
        owner = torch.arange(num).repeat_interleave(k * clutter)
        # an offset in 1..M-1 never lands on the example's own object
        src = (obj[owner] + torch.randint(1, m, (n,), generator=generator)) % m
        crop = torch.randint(t - f + 1, (2, n), generator=generator)
        paste = torch.randint(t - f + 1, (2, n), generator=generator)
        ar = torch.arange(f)
        rows, cols = crop[0, :, None] + ar, crop[1, :, None] + ar
        patches = images[src[:, None, None], rows[:, :, None], cols[:, None]]
        tile = torch.arange(num * k).repeat_interleave(clutter)
        flat = (
            tile[:, None, None] * t * t
            + (paste[0, :, None] + ar)[:, :, None] * t
            + (paste[1, :, None] + ar)[:, None]
        )
        canvas.view(-1).scatter_reduce_(0, flat.reshape(-1), patches.reshape(-1), reduce="amax")
    canvas = canvas.view(num, k, t, t)
    canvas[torch.arange(num), loc] = images[obj]
    grids = canvas.view(num, grid, grid, t, t).permute(0, 1, 3, 2, 4).reshape(num, 1, grid * t, -1)
    return grids.contiguous(), loc, obj


@_register("cluttered-tiles", _tiles_info)
def _load_cluttered_tiles(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    source: str = "digits",
    grid: int = 3,
    clutter: int = 3,
    fragment: float = 0.5,
    num_train: int = 5000,
    num_test: int = 1000,
    seed: int = 0,
) -> _Parts:
    # The training grids are cut from the source's training split and the test grids from its
    # test split, so no test object was ever seen in training.
    base = load(source, data_dir=data_dir, device="cpu")
    gen = torch.Generator().manual_seed(seed)
    parts = {}
    for split, x, y, num in (
        ("train", base.x_train, base.y_train, num_train),
        ("test", base.x_test, base.y_test, num_test),
    ):
        grids, loc, obj = compose_tiles(x[:, 0], num, grid, clutter, fragment, gen)
        parts[split] = (grids.to(device), y[obj].to(device), loc.to(device), obj.to(device))
    extras = {
        "class_names": list(base.extras["class_names"]),
        "grid": grid,
        "tile_size": TILE_SOURCES[source],
        # ground truth for evaluation only: the models never see it
        "location_train": parts["train"][2],
        "location_test": parts["test"][2],
        "object_index_train": parts["train"][3],
        "object_index_test": parts["test"][3],
    }
    return parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1], extras
