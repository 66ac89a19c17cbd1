"""Figures of the BNN family (:mod:`zoo.models.bnn`): the first layer's surviving weights.

Usage::

    from zoo.models.plots.bnn import plot
    plot(zm, data, "runs/lenet300")   # layer1_mask.png
"""

from __future__ import annotations

import math
from pathlib import Path

from zoo.data import Dataset
from zoo.models.plots import agg_pyplot
from zoo.models.weights import weight_guide
from zoo.spec import ZooModel

__all__ = ["plot"]


def plot(zm: ZooModel, data: Dataset, out_dir: str | Path) -> list[Path]:
    """``layer1_mask.png``: which inputs keep a weight in the first layer, and how many."""
    plt = agg_pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    site, mask = next(iter(weight_guide(zm).masks(zm.config.threshold).items()))
    mask = mask.cpu()
    path = out_dir / "layer1_mask.png"
    if mask.dim() == 2:
        counts = mask.sum(0).float()
        image = zm.info.image_shape
        if image is not None and counts.numel() == math.prod(image):
            counts = counts.reshape(image)
        else:
            counts = counts[None, :]
        counts = counts.numpy()
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
        axes[0].imshow(counts > 0, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[0].set_title(f"inputs kept: {int((counts > 0).sum())}/{counts.size}")
        shown = axes[1].imshow(counts, cmap="viridis", interpolation="nearest")
        axes[1].set_title("kept weights per input")
        fig.colorbar(shown, ax=axes[1])
    else:
        kernels = mask.float().mean(1)  # (out, *kernel): fraction of channels kept
        if kernels.dim() == 2:  # Conv1d: each kernel as one row
            kernels = kernels[:, None, :]
        elif kernels.dim() == 4:  # Conv3d: averaged over the kernel's depth
            kernels = kernels.mean(1)
        kernels = kernels.numpy()
        cols = min(10, kernels.shape[0])
        rows = math.ceil(kernels.shape[0] / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.3 * rows + 0.6), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < kernels.shape[0]:
                ax.imshow(kernels[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for ax in fig.axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{zm.name} ({zm.guide_name}): surviving weights of {site} (white: kept)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
