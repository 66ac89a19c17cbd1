"""Figures of the PPCA family (:mod:`zoo.models.ppca`): the latent space, and the ARD spectrum.

Usage::

    from zoo.models.plots.ppca import plot
    plot(zm, data, "runs/bpca")   # bpca_latent.png, bpca_ard.png
"""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.data import Dataset
from zoo.models.plots import agg_pyplot, shown_split
from zoo.models.ppca import PPCA, active_dimensions, posterior_weights
from zoo.spec import ZooModel

__all__ = ["plot"]


def plot(zm: ZooModel, data: Dataset, out_dir: str | Path) -> list[Path]:
    """The 2-D latent space of the test split (the two strongest dimensions), coloured by label;
    for Bayesian PCA also the ARD spectrum (column energies of ``E_q[W]``)."""
    plt = agg_pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model: PPCA = zm.model
    _, x, y = shown_split(data)
    with torch.no_grad():
        W = posterior_weights(zm)
        z = model.project(x.to(zm.device), W).cpu().numpy()
        energy = W.square().sum(0).cpu()
    order = energy.argsort(descending=True).tolist()
    paths = []
    fig, ax = plt.subplots(figsize=(6, 5))
    if model.latent_dim == 1:
        coords = (z[:, 0], 0 * z[:, 0])
    else:
        coords = (z[:, order[0]], z[:, order[1]])
    colour = None if y is None or y.dim() != 1 else y.cpu().numpy()
    if colour is None:
        ax.scatter(*coords, s=8, alpha=0.8)
    else:
        points = ax.scatter(*coords, c=colour, cmap="tab10", s=8, alpha=0.8)
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(f"z[{order[0]}]")
    ax.set_ylabel(f"z[{order[1]}]" if model.latent_dim > 1 else "")
    ax.set_title(f"{zm.name}: posterior means E[z|x] on {data.name}")
    fig.tight_layout()
    paths.append(out_dir / f"{zm.name}_latent.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if model.ard:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(range(model.latent_dim), energy[order].numpy())
        ax.set_xlabel("latent dimension (sorted)")
        ax.set_ylabel("||E[w_j]||^2")
        ax.set_title(f"ARD spectrum: {int(active_dimensions(zm).sum())} active")
        fig.tight_layout()
        paths.append(out_dir / f"{zm.name}_ard.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
