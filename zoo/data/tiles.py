"""Cluttered tiles: a grid of tiles, one holding an object and the others clutter cut from other
objects, a task for attention as a latent variable (:mod:`zoo.models.attention`).

The tiles are cut from one of :data:`TILE_SOURCES` (digits, Fashion-MNIST or MNIST), loaded
through their loaders in :mod:`zoo.data.loaders`: training grids from the source's training
split, test grids from its test split. The clutter, fragments cut from other objects, is that of
the cluttered MNIST of Mnih, Heess, Graves and Kavukcuoglu, "Recurrent Models of Visual
Attention", NeurIPS 2014.

Usage::

    from zoo.data.tiles import compose_tiles

    gen = torch.Generator().manual_seed(0)
    grids, location, obj = compose_tiles(images, 100, 3, 3, 0.5, gen)   # 3x3, 3 fragments a tile
    grids.shape       # (100, 1, 3 T, 3 T) for images of shape (M, T, T)
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from zoo.data.loaders import load_digits, load_fashion_mnist, load_mnist
from zoo.data.types import DataInfo, Parts
from zoo.data.validate import check_min, check_parts

__all__ = ["TILE_SOURCES", "compose_tiles", "load_cluttered_tiles", "tiles_info"]

#: Image sets the cluttered tiles can be cut from, and the side of one tile for each.
TILE_SOURCES = {"digits": 8, "fashion-mnist": 28, "mnist": 28}

# The loader of each source, called with its defaults, as load(source) would.
_SOURCE_LOADERS: dict[str, Callable[..., Parts]] = {
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
}


def tiles_info(
    *,
    source: str,
    grid: int,
    clutter: int,
    fragment: float,
    num_train: int,
    num_test: int,
    seed: int,
) -> DataInfo:
    """Square one-channel grids of ``grid`` tiles a side, ten classes; validates every argument
    of :func:`load_cluttered_tiles`."""
    if source not in TILE_SOURCES:
        raise ValueError(f"source must be one of {', '.join(TILE_SOURCES)}, got {source!r}")
    check_min("grid", grid, 2)
    check_min("clutter", clutter, 0)
    if not 0.0 < fragment < 1.0:
        raise ValueError(f"fragment must lie strictly between 0 and 1, got {fragment}")
    check_min("num_train", num_train, 1)
    check_min("num_test", num_test, 1)
    check_min("seed", seed, 0)
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


def _load_source(source: str, data_dir: str | os.PathLike[str] | None) -> Parts:
    """The source set on the CPU, checked as :func:`zoo.data.load` checks it."""
    parts = _SOURCE_LOADERS[source](data_dir=data_dir, device=torch.device("cpu"))
    side = TILE_SOURCES[source]
    if tuple(parts[0].shape[1:]) != (1, side, side):
        raise ValueError(
            f"cluttered tiles of {source} need {side}x{side} images, but its files hold examples "
            f"of shape {tuple(parts[0].shape[1:])}"
        )
    # Every source is a ten-class image set (see tiles_info).
    return check_parts(parts, "classification", 10)


def load_cluttered_tiles(
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
) -> Parts:
    """``num_train`` and ``num_test`` grids composed by :func:`compose_tiles` from ``source``.

    :param data_dir: passed to the source's loader (Fashion-MNIST and MNIST read files).
    :param device: where the tensors go; the grids are composed on the CPU.
    :returns: the grids and their labels (the object's class); the extras hold the class
        names, ``grid``, ``tile_size`` and, for evaluation only, the object's tile
        (``location_train``, ``location_test``) and its index in the source split
        (``object_index_train``, ``object_index_test``).
    """
    # The training grids are cut from the source's training split and the test grids from its
    # test split, so no test object was ever seen in training.
    x_train, y_train, x_test, y_test, base_extras = _load_source(source, data_dir)
    gen = torch.Generator().manual_seed(seed)
    parts = {}
    for split, x, y, num in (
        ("train", x_train, y_train, num_train),
        ("test", x_test, y_test, num_test),
    ):
        grids, loc, obj = compose_tiles(x[:, 0], num, grid, clutter, fragment, gen)
        parts[split] = (grids.to(device), y[obj].to(device), loc.to(device), obj.to(device))
    extras = {
        "class_names": list(base_extras["class_names"]),
        "grid": grid,
        "tile_size": TILE_SOURCES[source],
        # ground truth for evaluation only: the models never see it
        "location_train": parts["train"][2],
        "location_test": parts["test"][2],
        "object_index_train": parts["train"][3],
        "object_index_test": parts["test"][3],
    }
    return parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1], extras
