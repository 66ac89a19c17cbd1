"""A user's own files: CSV (one column the target, every other a feature) and NPZ (arrays ``x``,
``y``, optional ``x_test``, ``y_test``), read into a :class:`~zoo.data.types.Dataset`.

:func:`load_file` is what :func:`zoo.data.load` calls for a path (see :func:`is_file_name`) and
what ``zoo train --data my.csv --target price`` ends in. The rules, all stated once here:

* **Checks.** An empty file, a missing target column (the columns present are listed), a
  non-numeric column, an empty, NaN or infinite cell, a missing or misnamed array, an array that
  is not numeric, arrays of mismatched lengths: each is a ``ValueError`` that names the file and
  the column or array (and the first bad row).
* **Split.** A CSV file, and an NPZ file without ``x_test``, are split at random into a training
  and a test part: ``test_fraction`` (default 0.2, the test part rounded up) of the rows, chosen
  by a permutation drawn from ``numpy.random.default_rng(split_seed)`` (default 0) -- the same
  file, fraction and seed give the same split, and the global random state is left alone. An NPZ
  file with ``x_test`` keeps its own split; ``test_fraction`` and ``split_seed`` are refused.
* **Task** (``task=None``): classification when every target is a whole number and there are at
  most :data:`MAX_INFERRED_CLASSES` distinct values (or the targets are booleans), else
  regression; no ``y`` array means unsupervised. ``task=`` overrides the rule.
* **Labels.** Classes are the sorted distinct target values of both splits, renumbered
  ``0 .. C-1`` (e.g. ``{-1, 1}`` becomes ``{0, 1}``); ``Dataset.extras["class_values"]`` holds the
  original value of each class, ``extras["class_names"]`` the same as text.
* **Shapes.** Inputs are float32 ``(N, features)`` for a CSV file, ``(N, ...)`` as saved for NPZ.
  Regression targets of shape ``(N, 1)`` become ``(N,)`` (as in :func:`~zoo.data.from_tensors`);
  any other shape of ``y`` but ``(N,)`` is refused.
* **Fingerprint.** :func:`file_fingerprint` hashes what was read (CSV: the column names and
  values; NPZ: the arrays' names, dtypes, shapes and values), not the bytes, so re-saving the same
  values keeps it. ``Dataset.source`` is ``{"name": <absolute path>, "kwargs": {..., "fingerprint":
  ...}}``; :func:`load_file` given a ``fingerprint`` refuses a file whose content has changed,
  naming the file and both fingerprints. A checkpoint stores that source, so ``zoo evaluate``
  reloads the same file and refuses it once modified.

Usage::

    from zoo.data.tabular import load_file

    ds = load_file("houses.csv", target="price", test_fraction=0.25, split_seed=1)
    ds.source["kwargs"]["fingerprint"]             # 24 hex digits
    same = load_file(ds.source["name"], **ds.source["kwargs"])   # refuses a modified file
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import zipfile
from typing import Any

import numpy as np
import torch

from zoo.data.types import TASKS, Dataset
from zoo.data.validate import check_split, from_tensors

__all__ = [
    "FILE_OPTIONS",
    "FILE_SUFFIXES",
    "MAX_INFERRED_CLASSES",
    "NPZ_ARRAYS",
    "file_fingerprint",
    "infer_file_task",
    "is_file_name",
    "load_file",
    "read_csv",
    "read_npz",
]

#: File types :func:`load_file` reads.
FILE_SUFFIXES = (".csv", ".npz")
#: Arrays an NPZ file may hold: ``x`` is required, the others optional.
NPZ_ARRAYS = ("x", "y", "x_test", "y_test")
#: Most distinct whole-number targets for which ``task=None`` infers classification.
MAX_INFERRED_CLASSES = 20
#: Options of :func:`load_file` that only apply to files (``test_fraction`` also applies to the
#: catalog's sets that take it); with their command-line flags, for messages.
FILE_OPTIONS = {
    "target": "--target",
    "test_fraction": "--test-fraction",
    "split_seed": "--split-seed",
    "task": "--task",
}


def is_file_name(name: str) -> bool:
    """Whether ``name`` given to :func:`zoo.data.load` means a file rather than a catalog name:
    it ends in ``.csv`` or ``.npz`` (any case) or holds a path separator."""
    return (
        pathlib.Path(name).suffix.lower() in FILE_SUFFIXES
        or "/" in name
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
    )


def _digest(parts: list[tuple[str, np.ndarray]]) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for name, arr in parts:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def file_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """A short hash of named arrays: their names, dtypes, shapes and values, in the order given.

    :param arrays: what :func:`read_csv` or :func:`read_npz` returned.
    """
    return _digest(list(arrays.items()))


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _first_bad(mask: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(mask)
    return int(rows.size), int(rows[0]) if rows.size else -1


def _csv_frame(path: pathlib.Path) -> Any:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot be read as CSV: {err}") from None
    if len(frame) == 0:
        raise ValueError(f"{path}: no data rows (only the header {', '.join(frame.columns)})")
    return frame


def _csv_column(path: pathlib.Path, frame: Any, column: str) -> np.ndarray:
    """One column as float64 (booleans as 0/1), refusing text and empty, NaN or inf cells."""
    import pandas as pd

    values = frame[column]
    if values.dtype == bool:
        return values.to_numpy(dtype=np.float64)
    numeric = pd.to_numeric(values, errors="coerce")
    count, first = _first_bad((numeric.isna() & values.notna()).to_numpy())
    if count:
        raise ValueError(
            f"{path}: column {column!r} is not numeric: {count} cells are text, first in data "
            f"row {first} (line {first + 2}: {values.iloc[first]!r}); encode it as numbers or "
            "drop the column"
        )
    arr = numeric.to_numpy(dtype=np.float64)
    count, first = _first_bad(~np.isfinite(arr))
    if count:
        raise ValueError(
            f"{path}: column {column!r} has {count} empty, NaN or infinite cells, first in data "
            f"row {first} (line {first + 2}); fill or drop those rows"
        )
    return arr


def read_csv(path: str | os.PathLike[str], target: Any) -> dict[str, np.ndarray]:
    """Read a CSV file with a header row: the column ``target`` as ``y``, the others as ``x``.

    :param path: the file.
    :param target: the name of the target column.
    :returns: ``{"x": (N, D) float64, "y": (N,) float64, "columns": the feature names}``.
    :raises ValueError: naming the file and the column, for the problems listed in the module.
    """
    path = pathlib.Path(path)
    if target is None:
        raise ValueError(
            f"{path}: a CSV file needs target= (--target COLUMN), the column to predict"
        )
    if not isinstance(target, str):
        raise ValueError(f"{path}: target must be a column name (a string), got {target!r}")
    frame = _csv_frame(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise ValueError(
            f"{path}: no column {target!r}; the columns are: {', '.join(map(repr, columns))}"
        )
    features = [c for c in columns if c != target]
    if not features:
        raise ValueError(f"{path}: the only column is the target {target!r}; no features left")
    y = _csv_column(path, frame, target)
    x = np.stack([_csv_column(path, frame, c) for c in features], axis=1)
    return {"x": x, "y": y, "columns": np.array(features)}


# --------------------------------------------------------------------------------------------
# NPZ
# --------------------------------------------------------------------------------------------


def _npz_array(path: pathlib.Path, archive: Any, name: str) -> np.ndarray:
    try:
        arr = archive[name]
    except ValueError as err:  # object arrays need pickle, which is never allowed
        raise ValueError(f"{path}: array {name!r} cannot be read without pickle ({err})") from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{path}: array {name!r} has dtype {arr.dtype}, which is not numeric")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"{path}: array {name!r} is empty or a scalar (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.floating):
        count, first = _first_bad(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1))
        if count:
            raise ValueError(
                f"{path}: array {name!r} has NaN or infinite values in {count} of "
                f"{arr.shape[0]} rows, first in row {first}"
            )
    return arr


def _check_npz_shapes(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    for name in ("x", "x_test"):
        if name in arrays and arrays[name].ndim < 2:
            raise ValueError(
                f"{path}: array {name!r} has shape {arrays[name].shape}; inputs need at least 2 "
                "dimensions (examples, features...): save x.reshape(-1, 1) for one feature"
            )
    if "x_test" in arrays and arrays["x_test"].shape[1:] != arrays["x"].shape[1:]:
        raise ValueError(
            f"{path}: examples of 'x_test' have shape {arrays['x_test'].shape[1:]} but those of "
            f"'x' have {arrays['x'].shape[1:]}"
        )
    for x_name, y_name in (("x", "y"), ("x_test", "y_test")):
        if y_name in arrays and len(arrays[y_name]) != len(arrays[x_name]):
            raise ValueError(
                f"{path}: array {y_name!r} has {len(arrays[y_name])} rows but {x_name!r} has "
                f"{len(arrays[x_name])}"
            )


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an NPZ file (``numpy.savez``) holding ``x`` and optionally ``y``, ``x_test``,
    ``y_test`` (:data:`NPZ_ARRAYS`), never unpickling anything.

    :returns: the arrays present, by name, in the order of :data:`NPZ_ARRAYS`.
    :raises ValueError: naming the file and the array, for the problems listed in the module.
    """
    path = pathlib.Path(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds a single array, not an .npz archive of named arrays")
    with archive:
        held = list(archive.files)
        unknown = sorted(set(held) - set(NPZ_ARRAYS))
        if "x" not in held or unknown:
            raise ValueError(
                f"{path}: expected arrays {', '.join(NPZ_ARRAYS)} (x required); the file holds "
                f"{', '.join(map(repr, held)) or 'no arrays'}"
                + (f" ({', '.join(map(repr, unknown))} unknown)" if unknown else "")
                + "; save it with numpy.savez(path, x=..., y=...)"
            )
        arrays = {name: _npz_array(path, archive, name) for name in NPZ_ARRAYS if name in held}
    if "y_test" in arrays and "x_test" not in arrays:
        raise ValueError(f"{path}: array 'y_test' is given without 'x_test'")
    if "x_test" in arrays and ("y" in arrays) != ("y_test" in arrays):
        missing, present = ("y_test", "y") if "y" in arrays else ("y", "y_test")
        raise ValueError(f"{path}: array {missing!r} is missing but {present!r} is given")
    _check_npz_shapes(path, arrays)
    return arrays


# --------------------------------------------------------------------------------------------
# Task, labels, split
# --------------------------------------------------------------------------------------------


def infer_file_task(y: np.ndarray | None) -> str:
    """The task of a file's targets when none is given: ``"unsupervised"`` without targets,
    ``"classification"`` for booleans or whole numbers with at most
    :data:`MAX_INFERRED_CLASSES` distinct values, else ``"regression"``.

    Usage::

        infer_file_task(np.array([1, -1, 1]))       # "classification"
        infer_file_task(np.array([0.5, 2.0, 1.0]))  # "regression"
    """
    if y is None:
        return "unsupervised"
    if y.dtype == bool:
        return "classification"
    whole = bool(np.all(y == np.round(y)))
    return "classification" if whole and np.unique(y).size <= MAX_INFERRED_CLASSES else "regression"


def _target_vector(path: pathlib.Path, what: str, y: np.ndarray | None) -> np.ndarray | None:
    """``y`` as ``(N,)``: an ``(N, 1)`` column is flattened, any other shape refused."""
    if y is None or y.ndim == 1:
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    raise ValueError(
        f"{path}: {what} has shape {y.shape}; targets must have shape (N,) or (N, 1) "
        "(one target per example)"
    )


def _class_labels(
    path: pathlib.Path, what: str, ys: list[np.ndarray]
) -> tuple[list[np.ndarray], list[Any]]:
    """Labels renumbered ``0 .. C-1`` in the order of the sorted distinct values of all ``ys``,
    and the original value of each class."""
    joined = np.concatenate(ys)
    count, first = _first_bad(joined != np.round(joined))
    if count:
        raise ValueError(
            f"{path}: {what} holds {count} targets that are not whole numbers (first at row "
            f"{first}: {joined[first]}), so they cannot be class labels; use task='regression' "
            "(--task regression)"
        )
    values = np.unique(joined)
    mapped = [np.searchsorted(values, y).astype(np.int64) for y in ys]
    originals = [int(v) if float(v).is_integer() else float(v) for v in values.tolist()]
    return mapped, originals


def _split(
    x: np.ndarray, y: np.ndarray | None, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """A random split: the test rows are the first ``ceil(N * test_fraction)`` of a permutation
    drawn from ``default_rng(seed)``; each part keeps the file's order."""
    _, num_test = check_split(len(x), test_fraction)
    perm = np.random.default_rng(seed).permutation(len(x))
    test, train = np.sort(perm[:num_test]), np.sort(perm[num_test:])
    y_tr = None if y is None else y[train]
    y_te = None if y is None else y[test]
    return x[train], y_tr, x[test], y_te


def _check_options(
    path: pathlib.Path, has_test: bool, test_fraction: Any, split_seed: Any, task: Any
) -> tuple[float | None, int | None]:
    """The split's options, defaults filled in (``None`` when the file holds its own split)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if has_test:
        options = {"test_fraction": test_fraction, "split_seed": split_seed}
        given = [FILE_OPTIONS[k] for k, v in options.items() if v is not None]
        if given:
            raise ValueError(
                f"{path} holds its own test split (x_test), so {' and '.join(given)} "
                "do not apply; drop them or save the file without x_test"
            )
        return None, None
    test_fraction = 0.2 if test_fraction is None else test_fraction
    split_seed = 0 if split_seed is None else split_seed
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise ValueError(f"test_fraction must be a number, got {test_fraction!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)):
        raise ValueError(f"split_seed must be an integer, got {split_seed!r}")
    if split_seed < 0:
        raise ValueError(f"split_seed must be >= 0, got {split_seed}")
    return float(test_fraction), int(split_seed)


# --------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------


def _file_path(path: str | os.PathLike[str]) -> pathlib.Path:
    """The absolute path of a readable ``.csv`` or ``.npz`` file."""
    path = pathlib.Path(path).expanduser()
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; the zoo reads "
            f"{' and '.join(FILE_SUFFIXES)} files (IDX folders: --data mnist --data-dir DIR)"
        )
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a {path.suffix} file")
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    return path.resolve()


def _read(path: pathlib.Path, target: Any) -> tuple[dict[str, np.ndarray], str]:
    """The file's arrays and the name of its targets in messages."""
    if path.suffix.lower() == ".csv":
        return read_csv(path, target), f"column {target!r}"
    if target is not None:
        raise ValueError(
            f"{path}: target= (--target) applies to CSV files only; an NPZ file's targets are "
            "its array 'y'"
        )
    return read_npz(path), "array 'y'"


def load_file(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    target: str | None = None,
    test_fraction: float | None = None,
    split_seed: int | None = None,
    task: str | None = None,
    fingerprint: str | None = None,
) -> Dataset:
    """Load a ``.csv`` or ``.npz`` file as a :class:`~zoo.data.types.Dataset` (the rules are in
    the module's docstring).

    :param path: the file; recorded as an absolute path in ``Dataset.source``.
    :param device: where the tensors go; ``None`` means CPU.
    :param target: the target column of a CSV file (required there, refused for NPZ).
    :param test_fraction: share of the rows in the test split (default 0.2); refused when an NPZ
        file holds ``x_test``.
    :param split_seed: seed of the split (default 0); refused likewise.
    :param task: ``"classification"``, ``"regression"`` or ``"unsupervised"`` (targets dropped);
        inferred when ``None`` (see :func:`infer_file_task`).
    :param fingerprint: when given, the file's content must still have this
        :func:`file_fingerprint`.
    :raises FileNotFoundError: when there is no file at ``path``.
    :raises ValueError: naming the file and the column or array, for a bad file or option, or a
        file whose content changed.
    """
    path = _file_path(path)
    arrays, what = _read(path, target)
    found = file_fingerprint(arrays)
    if fingerprint is not None and found != fingerprint:
        raise ValueError(
            f"{path} has changed since it was recorded: its content's fingerprint is now {found}, "
            f"the recorded one is {fingerprint}. Restore the file, or pass it with --data to use "
            "the new content"
        )
    has_test = "x_test" in arrays
    test_fraction, split_seed = _check_options(path, has_test, test_fraction, split_seed, task)
    y = _target_vector(path, what, arrays.get("y"))
    y_test = _target_vector(path, "array 'y_test'", arrays.get("y_test"))
    ys = [t for t in (y, y_test) if t is not None]
    task = task or infer_file_task(np.concatenate(ys) if ys else None)
    extras: dict[str, Any] = {}
    if "columns" in arrays:
        extras["feature_names"] = arrays["columns"].tolist()
    if task == "unsupervised":
        y = y_test = None
    elif y is None:
        raise ValueError(f"{path}: task {task!r} needs targets, but the file has no array 'y'")
    elif task == "classification":
        mapped, values = _class_labels(path, what, ys)
        y, y_test = mapped[0], (mapped[1] if y_test is not None else None)
        extras.update(class_values=values, class_names=[str(v) for v in values])
    x, x_test = arrays["x"], arrays.get("x_test")
    if not has_test:
        x, y, x_test, y_test = _split(x, y, test_fraction, split_seed)
    num_classes = len(extras["class_values"]) if task == "classification" else None
    ds = from_tensors(
        x, y, x_test=x_test, y_test=y_test, task=task, num_classes=num_classes, name=path.name
    )
    kwargs: dict[str, Any] = {"target": target} if path.suffix.lower() == ".csv" else {}
    if not has_test:
        kwargs.update(test_fraction=test_fraction, split_seed=split_seed)
    kwargs.update(task=task, fingerprint=found)
    ds = dataclasses.replace(ds, source={"name": str(path), "kwargs": kwargs}, extras=extras)
    return ds if device is None else ds.to(device)
