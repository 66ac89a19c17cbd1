"""Predictive metrics: calibration for now (issue 7 adds entropy, mutual information, ...).

* :func:`expected_calibration_error` -- ECE with equal-width confidence bins (Naeini, Cooper &
  Hauskrecht 2015; Guo, Pleiss, Sun & Weinberger 2017, "On calibration of modern neural
  networks", ICML).
* :func:`reliability_curve` and :func:`reliability_diagram` -- accuracy against confidence per
  bin, the picture behind the ECE.

Usage::

    probs = predictive.softmax(-1).mean(0)          # (N, C) posterior predictive
    expected_calibration_error(probs, y)            # 0 for a perfectly calibrated predictor
    reliability_diagram({"meanfield": probs}, y, "reliability.png")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ReliabilityCurve",
    "expected_calibration_error",
    "reliability_curve",
    "reliability_diagram",
]


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per confidence bin ``(lo, hi]``: the number of predictions, their mean confidence and
    their accuracy (``nan`` in empty bins)."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """``sum_m |B_m| / n |acc(B_m) - conf(B_m)|``."""
        used = self.counts > 0
        weights = self.counts[used] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[used] - self.confidence[used])))


def _check(probs: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, num_bins: int):
    probs = torch.as_tensor(probs, dtype=torch.float64).detach().cpu()
    y = torch.as_tensor(y).detach().cpu()
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with C >= 2, got {tuple(probs.shape)}")
    if y.shape != (probs.shape[0],):
        raise ValueError(f"y must have shape ({probs.shape[0]},), got {tuple(y.shape)}")
    if probs.shape[0] == 0:
        raise ValueError("no predictions to calibrate")
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    if not torch.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("probs must be finite and non-negative")
    if (probs.sum(1) - 1).abs().max() > 1e-4:
        raise ValueError("each row of probs must sum to 1 (pass probabilities, not logits)")
    return probs, y.long()


def reliability_curve(
    probs: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, num_bins: int = 15
) -> ReliabilityCurve:
    """Bin the top-class confidence into ``num_bins`` equal-width bins ``((m-1)/M, m/M]``.

    :param probs: predictive class probabilities, ``(N, C)``, rows summing to 1.
    :param y: true labels, ``(N,)``.
    """
    probs, y = _check(probs, y, num_bins)
    confidence, predicted = probs.max(1)
    correct = (predicted == y).double()
    edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64)
    # bucketize(right=False) puts c in bin m when edges[m] < c <= edges[m + 1]
    index = torch.bucketize(confidence, edges[1:-1])
    counts = torch.bincount(index, minlength=num_bins).double()
    conf_sum = torch.bincount(index, weights=confidence, minlength=num_bins)
    acc_sum = torch.bincount(index, weights=correct, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = (conf_sum / counts).numpy()
        acc = (acc_sum / counts).numpy()
    return ReliabilityCurve(edges.numpy(), counts.numpy().astype(int), conf, acc)


def expected_calibration_error(
    probs: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, num_bins: int = 15
) -> float:
    """The expected calibration error of the top-class predictions (Guo et al. 2017, eq. 3).

    ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` over ``num_bins`` equal-width confidence
    bins.  It is 0 for a calibrated predictor up to the binning and sampling noise; 15 bins is
    Guo et al.'s choice.

    :raises ValueError: for probabilities that are not ``(N, C)`` rows summing to 1, labels of
        the wrong shape, or ``num_bins < 1``.
    """
    return reliability_curve(probs, y, num_bins).ece


def reliability_diagram(
    predictions: Mapping[str, torch.Tensor | np.ndarray],
    y: torch.Tensor | np.ndarray,
    path: str | Path,
    num_bins: int = 15,
    title: str = "Reliability diagram",
) -> Path:
    """Accuracy against confidence per bin, one line per model, with the diagonal of a
    calibrated predictor and each model's ECE in the legend; written as a PNG.

    :param predictions: model label -> predictive probabilities ``(N, C)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not predictions:
        raise ValueError("reliability_diagram needs at least one model's predictions")
    curves = {name: reliability_curve(p, y, num_bins) for name, p in predictions.items()}
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(6, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    centers = None
    for name, c in curves.items():
        used = c.counts > 0
        ax.plot(c.confidence[used], c.accuracy[used], marker="o", label=f"{name} (ECE {c.ece:.3f})")
        centers = (c.edges[:-1] + c.edges[1:]) / 2
        hist.plot(centers, c.counts / c.counts.sum(), marker=".", label=name)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    hist.set_xlabel(f"confidence (top-class probability, {num_bins} bins)")
    hist.set_ylabel("fraction")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
