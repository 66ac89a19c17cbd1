"""Figures of the attention family (:mod:`zoo.models.attention`): the attention over the grids.

Usage::

    from zoo.models.plots.attention import plot
    plot(zm, data, "runs/attention", num=8)   # attention-enum_attention.png
"""

from __future__ import annotations

from pathlib import Path

import torch

from guides.attention import PosteriorAttention
from zoo.data import Dataset
from zoo.models.attention import TileAttention, split_extras
from zoo.models.plots import agg_pyplot, shown_split
from zoo.spec import ZooModel

__all__ = ["plot"]


def plot(zm: ZooModel, data: Dataset, out_dir: str | Path, num: int = 8) -> list[Path]:
    """Write ``{name}_attention.png``: the first ``num`` test grids with ``p(s|x)`` shaded over
    each tile (red, opacity the probability; the number is the probability), the object's true
    tile outlined in green, and the prediction against the label above each grid.  For
    ``amortized`` a second row shows ``q(s | x, y)``."""
    plt = agg_pyplot()
    from matplotlib.patches import Rectangle

    model: TileAttention = zm.model
    split, x, y = shown_split(data)
    x, y = x[:num].to(zm.device), y[:num].to(zm.device)
    location = split_extras(data.extras, split, "location")
    with torch.no_grad():
        log_py, att = model.predict(x)
        maps = [("p(s|x)", att.cpu())]
        if isinstance(zm.guide, PosteriorAttention):
            maps.append(("q(s|x,y)", zm.guide.logits(x, y).softmax(-1).cpu()))
    pred = log_py.argmax(-1).cpu()
    n, g, t = x.shape[0], model.grid, model.tile
    fig, axes = plt.subplots(len(maps), n, figsize=(1.9 * n, 2.2 * len(maps)), squeeze=False)
    for row, (label, probs) in enumerate(maps):
        for i in range(n):
            ax = axes[row, i]
            ax.imshow(x[i, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            for k in range(g * g):
                r, c = divmod(k, g)
                p = float(probs[i, k])
                ax.add_patch(
                    Rectangle((c * t - 0.5, r * t - 0.5), t, t, color="red", alpha=0.6 * p, lw=0)
                )
                ax.text(c * t + 1, r * t + 2, f"{p:.2f}", color="yellow", fontsize=6)
                if location is not None and int(location[i]) == k:
                    ax.add_patch(
                        Rectangle(
                            (c * t - 0.5, r * t - 0.5), t, t, fill=False, edgecolor="lime", lw=1.5
                        )
                    )
            ax.set_axis_off()
            if row == 0:
                ax.set_title(f"pred {int(pred[i])} / true {int(y[i])}", fontsize=7)
        axes[row, 0].text(
            -0.1,
            0.5,
            label,
            transform=axes[row, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
        )
    fig.suptitle(f"{zm.name}: attention (red) and the object's tile (green)", fontsize=9)
    fig.tight_layout()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{zm.name}_attention.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
