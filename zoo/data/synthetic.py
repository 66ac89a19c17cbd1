"""Synthetic sets with a known ground truth, generated from a seed.

* ``ppca-synthetic`` -- probabilistic PCA data ``x = W z + mu + sigma eps`` (Tipping and Bishop,
  "Probabilistic principal component analysis", JRSS B 61(3), 1999); ``W``, ``mu`` and
  ``sigma2`` are kept in the extras.
* ``regression-synthetic`` -- a linear model with Gaussian noise; ``w``, ``b``, ``noise_std``.
* ``classification-synthetic`` -- a softmax-linear model; ``W``, ``b``.

As in :mod:`zoo.data.loaders`, each set is an info function and a loader that
:data:`zoo.data.catalog.DATASETS` names.

Usage::

    from zoo.data import load

    ds = load("ppca-synthetic", num_data=2000, latent_dim=2, seed=1)
    ds.extras["W"].shape      # (10, 2)
"""

from __future__ import annotations

import math
import os

import torch

from zoo.data.types import DataInfo, Parts
from zoo.data.validate import check_min, check_split

__all__ = [
    "classification_info",
    "load_classification",
    "load_ppca",
    "load_regression",
    "ppca_info",
    "regression_info",
]

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


def ppca_info(
    *,
    num_data: int,
    input_dim: int,
    latent_dim: int,
    noise_std: float,
    test_fraction: float,
    seed: int,
) -> DataInfo:
    """Vectors of ``input_dim``, unsupervised; validates every argument of :func:`load_ppca`."""
    check_min("num_data", num_data, 2)
    check_min("input_dim", input_dim, 1)
    check_min("latent_dim", latent_dim, 1)
    if latent_dim > input_dim:
        raise ValueError(f"latent_dim ({latent_dim}) must not exceed input_dim ({input_dim})")
    if not (noise_std > 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be positive and finite, got {noise_std}")
    check_split(num_data, test_fraction)
    check_min("seed", seed, 0)
    return DataInfo((input_dim,), "unsupervised")


def load_ppca(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    num_data: int = 1000,
    input_dim: int = 10,
    latent_dim: int = 3,
    noise_std: float = 0.5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Parts:
    """``num_data`` draws of ``x = W z + mu + noise_std * eps`` with ``z, eps ~ N(0, I)``.

    :param data_dir: ignored.
    :param device: where the tensors go.
    :returns: no targets; the extras hold ``W`` ``(input_dim, latent_dim)``, ``mu`` and
        ``sigma2`` (float64).
    """
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
    num_train, _ = check_split(num_data, test_fraction)
    x_train, _, x_test, _ = _split_rows(x, None, num_train, device)
    extras = {
        "W": w.to(device),
        "mu": mu.to(device),
        "sigma2": torch.tensor(noise_std**2, dtype=f64, device=device),
    }
    return x_train, None, x_test, None, extras


def regression_info(
    *, num_data: int, input_dim: int, noise_std: float, test_fraction: float, seed: int
) -> DataInfo:
    """Vectors of ``input_dim``, regression; validates every argument of
    :func:`load_regression`."""
    check_min("num_data", num_data, 2)
    check_min("input_dim", input_dim, 1)
    if not (noise_std >= 0 and math.isfinite(noise_std)):
        raise ValueError(f"noise_std must be non-negative and finite, got {noise_std}")
    check_split(num_data, test_fraction)
    check_min("seed", seed, 0)
    return DataInfo((input_dim,), "regression")


def load_regression(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    num_data: int = 500,
    input_dim: int = 5,
    noise_std: float = 0.3,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Parts:
    """``num_data`` draws of ``y = x w + b + noise_std * eps`` with ``x, w, b, eps ~ N(0, 1)``.

    :param data_dir: ignored.
    :param device: where the tensors go.
    :returns: float32 targets; the extras hold ``w``, ``b`` and ``noise_std`` (float64).
    """
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    w = torch.randn(input_dim, generator=gen, dtype=f64)
    b = torch.randn((), generator=gen, dtype=f64)
    x = torch.randn(num_data, input_dim, generator=gen, dtype=f64)
    y = x @ w + b + noise_std * torch.randn(num_data, generator=gen, dtype=f64)
    num_train, _ = check_split(num_data, test_fraction)
    parts = _split_rows(x, y, num_train, device)
    extras = {
        "w": w.to(device),
        "b": b.to(device),
        "noise_std": torch.tensor(noise_std, dtype=f64, device=device),
    }
    return (*parts, extras)


def classification_info(
    *,
    num_data: int,
    input_dim: int,
    num_classes: int,
    test_fraction: float,
    seed: int,
) -> DataInfo:
    """Vectors of ``input_dim``, ``num_classes`` classes; validates every argument of
    :func:`load_classification`."""
    check_min("num_data", num_data, 2)
    check_min("input_dim", input_dim, 1)
    check_min("num_classes", num_classes, 2)
    check_split(num_data, test_fraction)
    check_min("seed", seed, 0)
    return DataInfo((input_dim,), "classification", num_classes=num_classes)


def load_classification(
    *,
    data_dir: str | os.PathLike[str] | None,
    device: torch.device,
    num_data: int = 500,
    input_dim: int = 5,
    num_classes: int = 3,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Parts:
    """``num_data`` labels drawn from ``softmax(x W + b)`` with ``x, b ~ N(0, 1)``,
    ``W ~ N(0, 4)``.

    :param data_dir: ignored.
    :param device: where the tensors go.
    :returns: int64 labels; the extras hold ``W`` and ``b`` (float64).
    """
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    # Weights of scale 2 give logits spread enough that the classes are learnable but overlap.
    w = 2.0 * torch.randn(input_dim, num_classes, generator=gen, dtype=f64)
    b = torch.randn(num_classes, generator=gen, dtype=f64)
    x = torch.randn(num_data, input_dim, generator=gen, dtype=f64)
    probs = torch.softmax(x @ w + b, dim=-1)
    y = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    num_train, _ = check_split(num_data, test_fraction)
    parts = _split_rows(x, y, num_train, device)
    extras = {"W": w.to(device), "b": b.to(device)}
    return (*parts, extras)
