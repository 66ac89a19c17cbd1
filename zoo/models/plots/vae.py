"""Figures of the VAE family (:mod:`zoo.models.vae`): samples, reconstructions, latent space.

Usage::

    from zoo.models.plots.vae import plot
    plot(zm, data, "runs/vae")   # vae-digits_samples.png, _reconstructions.png, _latent.png
"""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.data import Dataset
from zoo.models.plots import agg_pyplot, shown_split
from zoo.models.vae import VAE, prepare_eval_data
from zoo.spec import ZooModel

__all__ = ["plot"]


def _grid(images: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``rows * cols`` images ``(n, H, W)`` tiled into one ``(rows H, cols W)`` array."""
    n, h, w = images.shape
    padded = torch.zeros(rows * cols, h, w)
    padded[:n] = images[: rows * cols]
    return padded.reshape(rows, cols, h, w).permute(0, 2, 1, 3).reshape(rows * h, cols * w)


def plot(zm: ZooModel, data: Dataset, out_dir: str | Path) -> list[Path]:
    """Write ``{name}_samples.png`` (``E[x|z]``, ``z ~ p(z)``), ``{name}_reconstructions.png``
    (test images above ``E[x | z = m(x)]``) and ``{name}_latent.png`` (posterior means of the
    test split, the first two principal components when ``k > 2``, coloured by label)."""
    plt = agg_pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model: VAE = zm.model
    _, x, labels = shown_split(data)
    x = prepare_eval_data(zm, x[:2000].to(zm.device))
    paths = []
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z_prior = torch.randn(64, model.latent_dim, generator=gen).to(zm.device)
        samples = model.mean(z_prior).cpu()
        loc, _ = zm.guide.encode(x)
        recon = model.mean(loc[:16]).cpu()
    if len(model.input_shape) == 3:
        h, w = model.input_shape[1:]
        grids = {
            "samples": (_grid(samples[:, : h * w].reshape(-1, h, w), 8, 8), "E[x|z], z ~ p(z)"),
            "reconstructions": (
                _grid(
                    torch.cat(
                        [x[:16].cpu().reshape(-1, h, w), recon[:, : h * w].reshape(-1, h, w)]
                    ),
                    2,
                    16,
                ),
                "test images (top) and E[x | z = m(x)] (bottom)",
            ),
        }
        for key, (image, title) in grids.items():
            fig, ax = plt.subplots(figsize=(8, 8 if key == "samples" else 1.4))
            ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_axis_off()
            ax.set_title(f"{zm.name}: {title}", fontsize=9)
            fig.tight_layout()
            paths.append(out_dir / f"{zm.name}_{key}.png")
            fig.savefig(paths[-1], dpi=100)
            plt.close(fig)
    z = loc.cpu()
    if z.shape[1] > 2:
        centered = z - z.mean(0)
        _, _, v = torch.linalg.svd(centered, full_matrices=False)
        coords, axes = centered @ v[:2].T, ("PC 1 of E[z|x]", "PC 2 of E[z|x]")
    else:
        coords = torch.cat([z, torch.zeros(z.shape[0], 2 - z.shape[1])], 1)
        axes = ("z[0]", "z[1]" if z.shape[1] > 1 else "")
    fig, ax = plt.subplots(figsize=(6, 5))
    colour = None if labels is None or labels.dim() != 1 else labels[: z.shape[0]].cpu().numpy()
    points = ax.scatter(coords[:, 0], coords[:, 1], c=colour, cmap="tab10", s=6, alpha=0.8)
    if colour is not None:
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"{zm.name}: posterior means on {data.name}")
    fig.tight_layout()
    paths.append(out_dir / f"{zm.name}_latent.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
