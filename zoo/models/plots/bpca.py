"""Figures of Bayesian PCA by VB (:mod:`zoo.models.bpca`): the latent space and the ARD spectrum.

Usage::

    from zoo.models.plots.bpca import plot
    plot(zm, data, "runs/bpca-vb")   # bpca-vb_latent.png, bpca-vb_ard.png
"""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.data import Dataset
from zoo.models.bpca import active_dimensions
from zoo.models.plots import agg_pyplot, shown_split
from zoo.models.vbpca import update_z
from zoo.spec import ZooModel

__all__ = ["plot"]


def plot(zm: ZooModel, data: Dataset, out_dir: str | Path) -> list[Path]:
    """The test split's means of ``q(z_n)`` on the two strongest dimensions, coloured by label,
    and the ARD spectrum: ``1 / E[alpha_j]`` and the column energies ``||E[w_j]||^2``."""
    plt = agg_pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, x, y = shown_split(data)
    with torch.no_grad():
        s = zm.guide.state()
        update_z(s, zm.model.flat(x.to(zm.device)).to(torch.float64))
        energy = s.column_energy().cpu()
        inv_alpha = (1 / s.alpha).cpu()
    order = energy.argsort(descending=True).tolist()
    z = s.X.cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    second = order[1] if len(order) > 1 else order[0]
    colour = None if y is None or y.dim() != 1 else y.cpu().numpy()
    points = ax.scatter(z[:, order[0]], z[:, second], c=colour, cmap="tab10", s=8, alpha=0.8)
    if colour is not None:
        fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel(f"z[{order[0]}]")
    ax.set_ylabel(f"z[{second}]")
    ax.set_title(f"{zm.name}: means of q(z_n) on {data.name}")
    fig.tight_layout()
    paths = [out_dir / f"{zm.name}_latent.png"]
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(range(len(order)), energy[order].numpy(), label="||E[w_j]||^2")
    ax.plot(
        range(len(order)),
        (zm.model.input_dim * inv_alpha[order]).numpy(),
        "k.",
        label="d/E[alpha_j]",
    )
    ax.set_yscale("log")
    ax.set_xlabel("latent dimension (sorted)")
    ax.legend()
    ax.set_title(f"ARD spectrum: {int(active_dimensions(zm).sum())} active")
    fig.tight_layout()
    paths.append(out_dir / f"{zm.name}_ard.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
