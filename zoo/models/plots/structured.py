"""Figures of the SBP entries (:mod:`zoo.models.structured`): units kept per layer, and why.

Usage::

    from zoo.models.plots.structured import plot
    plot(zm, data, "runs/lenet300-sbp")   # units_snr.png
"""

from __future__ import annotations

from pathlib import Path

from zoo.data import Dataset
from zoo.models.plots import agg_pyplot
from zoo.models.weights import weight_guide
from zoo.spec import ZooModel

__all__ = ["plot"]


def plot(zm: ZooModel, data: Dataset, out_dir: str | Path) -> list[Path]:
    """``units_snr.png``: each layer's units by ``log10 SNR`` (kept at SNR >= 1, above the line)."""
    plt = agg_pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    guide = weight_guide(zm)
    log_alpha = {k: v.detach().cpu() for k, v in guide.log_alpha().items()}
    masks = guide.masks(zm.config.threshold)
    fig, axes = plt.subplots(1, len(log_alpha), figsize=(3.2 * len(log_alpha), 3), squeeze=False)
    for ax, (site, la) in zip(axes[0], log_alpha.items(), strict=True):
        log_snr = (-0.5 * la).sort(descending=True).values / 2.302585
        ax.plot(log_snr.numpy(), ".", markersize=3)
        ax.axhline(-0.5 * zm.config.threshold / 2.302585, color="red", linewidth=0.8)
        ax.set_title(f"{site}: {int(masks[site].sum())}/{la.numel()} kept", fontsize=8)
        ax.set_xlabel("unit (sorted)")
    axes[0][0].set_ylabel("log10 SNR")
    fig.suptitle(f"{zm.name} ({zm.guide_name}): units kept at SNR >= 1")
    fig.tight_layout()
    path = out_dir / "units_snr.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]
