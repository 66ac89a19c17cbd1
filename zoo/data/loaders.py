"""Loaders of the image sets: scikit-learn's digits, and Fashion-MNIST and MNIST from IDX files.

Each dataset is a pair: an info function (its keyword arguments, validated, to a
:class:`~zoo.data.types.DataInfo`, reading nothing) and a loader (``data_dir``, ``device`` and
the same keyword arguments, with defaults, to :data:`~zoo.data.types.Parts`).
:data:`zoo.data.catalog.DATASETS` names them; call them through :func:`zoo.data.load`, which
validates the result.

References: Alpaydin and Kaynak, "Optical Recognition of Handwritten Digits" (UCI, 1998), the
8x8 digits; LeCun, Cortes and Burges, the MNIST database (1998); Xiao, Rasul and Vollgraf,
"Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms",
arXiv:1708.07747 (2017).

Usage::

    from zoo.data.loaders import load_digits

    cpu = torch.device("cpu")
    x_train, y_train, x_test, y_test, extras = load_digits(data_dir=None, device=cpu)
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import torch

from zoo.data.files import find_idx_files
from zoo.data.idx import IDXFormatError, read_idx
from zoo.data.types import DataInfo, Parts
from zoo.data.validate import check_min, check_split

__all__ = [
    "digits_info",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "mnist_info",
]

# --------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------

_DIGIT_NAMES = [str(i) for i in range(10)]


def digits_info(*, test_fraction: float, seed: int) -> DataInfo:
    """The 8x8 digits: one channel, ten classes; validates the split and the seed."""
    check_split(1797, test_fraction)
    check_min("seed", seed, 0)
    return DataInfo((1, 8, 8), "classification", num_classes=10, image_shape=(8, 8))


def load_digits(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Parts:
    """scikit-learn's 1797 digits, pixels scaled to ``[0, 1]``, split stratified by class.

    :param data_dir: ignored (the set ships with scikit-learn).
    :param device: where the tensors go.
    :param test_fraction: share of the test split (rounded up, as ``train_test_split`` does).
    :param seed: seed of the split.
    """
    # Imported lazily: scikit-learn is slow to import and only this loader needs it.
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
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
# MNIST-style IDX sets
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


def mnist_info() -> DataInfo:
    """Fashion-MNIST and MNIST: one 28x28 channel, ten classes (the usual files; :func:`load`
    takes the shape of the files it reads, see :func:`load_mnist`)."""
    return DataInfo((1, 28, 28), "classification", num_classes=10, image_shape=(28, 28))


def _idx_inputs(images: np.ndarray, path: pathlib.Path, device: torch.device) -> torch.Tensor:
    """IDX inputs as float32: ``(N, H, W)`` images of any size become ``(N, 1, H, W)``, an
    ``(N, D)`` array (not images) stays ``(N, D)``; unsigned bytes are scaled to ``[0, 1]``, any
    other type is kept as it is."""
    if images.ndim not in (2, 3):
        raise IDXFormatError(
            f"{path}: expected images (N, H, W) or vectors (N, D), got shape {images.shape}"
        )
    # Move uint8 pixels before converting: a quarter of the bytes to transfer.
    x = torch.from_numpy(images).to(device)
    if images.ndim == 3:
        x = x.unsqueeze(1)
    if images.dtype == np.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


def _read_split(
    images_path: pathlib.Path, labels_path: pathlib.Path, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
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
    x = _idx_inputs(images, images_path, device)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    return x, y


def _load_idx_dataset(
    name: str, data_dir: str | os.PathLike[str] | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    files = find_idx_files(name, data_dir)
    x_train, y_train = _read_split(files["train_images"], files["train_labels"], device)
    x_test, y_test = _read_split(files["test_images"], files["test_labels"], device)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise IDXFormatError(
            f"{files['train_images']} holds examples of shape {tuple(x_train.shape[1:])} but "
            f"{files['test_images']} holds {tuple(x_test.shape[1:])}"
        )
    return x_train, y_train, x_test, y_test


def load_fashion_mnist(*, data_dir: str | os.PathLike[str] | None, device: torch.device) -> Parts:
    """Fashion-MNIST's 60000 + 10000 images, read from the IDX files found by
    :func:`~zoo.data.files.find_idx_files`.

    Files of the same layout but another shape are read too: ``(N, H, W)`` images of any size
    become ``(N, 1, H, W)``, an ``(N, D)`` array ``(N, D)`` vectors; unsigned bytes are scaled
    to ``[0, 1]``, other types kept as they are.

    :raises FileNotFoundError: when no folder holds the four files.
    :raises IDXFormatError: for inputs of another dimension, train and test inputs of different
        shapes, or labels outside 0..9.
    """
    parts = _load_idx_dataset("fashion-mnist", data_dir, device)
    return (*parts, {"class_names": list(_FASHION_MNIST_NAMES)})


def load_mnist(*, data_dir: str | os.PathLike[str] | None, device: torch.device) -> Parts:
    """MNIST's 60000 + 10000 images, read from the IDX files found by
    :func:`~zoo.data.files.find_idx_files`, by the same rules (other shapes, scaling, errors)
    as :func:`load_fashion_mnist`."""
    parts = _load_idx_dataset("mnist", data_dir, device)
    return (*parts, {"class_names": list(_DIGIT_NAMES)})
