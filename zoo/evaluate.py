"""Predictive metrics of classifiers: calibration, uncertainty, OOD and adversarial detection.

* :func:`predictive_draws` -- ``S`` posterior draws of the class probabilities
  ``p(y | x, W_s)`` of any registered classifier, in batches on its device; their mean is the
  posterior predictive ``p(y | x, D)``.
* :func:`predictive_entropy`, :func:`expected_entropy` and :func:`mutual_information` -- the
  total, aleatoric and epistemic uncertainty, ``H[E_W p] = E_W H[p] + I[y; W]``, the last being
  BALD (Houlsby, Huszár, Ghahramani & Lengyel 2011; Depeweg et al. 2018 for the split);
  :func:`uncertainty_scores` collects them with ``1 - max p``.
* :func:`negative_log_likelihood` and :func:`brier_score` (Brier 1950, the multi-class form);
  :func:`classification_metrics` adds accuracy and ECE.
* :func:`detection_auc` -- AUROC and AUPR of a score at telling two sets apart (sklearn).
* :func:`shifted_inputs` and :func:`resize_images` -- out-of-distribution inputs from reachable
  data: rotated, inverted and noise images, another data set resized.
* :func:`fgsm` and :func:`pgd` -- adversarial examples against a deterministic net, such as the
  posterior-mean net of :func:`mean_net` (Goodfellow, Shlens & Szegedy 2015; Madry et al. 2018).
  Li & Gal (2017), "Dropout inference in Bayesian neural networks with alpha-divergences", ICML,
  use the epistemic uncertainty to detect them.
* :func:`expected_calibration_error` -- ECE with equal-width confidence bins (Naeini, Cooper &
  Hauskrecht 2015; Guo, Pleiss, Sun & Weinberger 2017, "On calibration of modern neural
  networks", ICML).
* :func:`reliability_curve` and :func:`reliability_diagram` -- accuracy against confidence per
  bin, the picture behind the ECE.

Usage::

    probs = predictive.softmax(-1).mean(0)          # (N, C) posterior predictive
    expected_calibration_error(probs, y)            # 0 for a perfectly calibrated predictor
    reliability_diagram({"meanfield": probs}, y, "reliability.png")

    draws = predictive_draws(zm, data.x_test, num_samples=20)   # (S, N, C) on zm's device
    scores = uncertainty_scores(draws)              # entropy, aleatoric, mutual_info, 1 - max p
    classification_metrics(draws, data.y_test)      # acc, nll, brier, ece
    x_adv = fgsm(mean_net(zm), data.x_test, data.y_test, eps=0.1)
    attacked = uncertainty_scores(predictive_draws(zm, x_adv))
    detection_auc(scores["mutual_info"], attacked["mutual_info"])   # clean 0, attacked 1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pyro.poutine import Trace
from torch import nn
from torch.distributions import Categorical

from zoo.likelihoods import class_probs
from zoo.spec import ZooModel, posterior_draws

__all__ = [
    "SHIFTS",
    "ReliabilityCurve",
    "brier_score",
    "classification_metrics",
    "detection_auc",
    "expected_calibration_error",
    "expected_entropy",
    "fgsm",
    "mean_net",
    "mutual_information",
    "negative_log_likelihood",
    "pgd",
    "predictive_draws",
    "predictive_entropy",
    "reliability_curve",
    "reliability_diagram",
    "resize_images",
    "shifted_inputs",
    "uncertainty_scores",
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


# --------------------------------------------------------------------------------------------
# Posterior predictive draws and their uncertainty


@torch.no_grad()
def predictive_draws(
    zm: ZooModel, x: torch.Tensor, num_samples: int | None = None, batch_size: int | None = None
) -> torch.Tensor:
    """Class probabilities ``p(y | x_i, W_s)`` under ``num_samples`` posterior draws, ``(S, N, C)``.

    Works for any classifier whose likelihood is a ``Categorical`` or ``Bernoulli`` site ``"obs"``,
    read off :func:`zoo.spec.posterior_draws`.  Batches stay on ``zm``'s device, where the
    result is.

    :param zm: a :class:`zoo.registry.ZooModel` with ``info.task == "classification"``.
    :param num_samples: ``S``; the config's ``eval_samples`` (else 10) when omitted.
    :param batch_size: examples per forward pass; the config's ``eval_batch_size`` when omitted.
    :raises ValueError: for a model that is not a classifier or ``num_samples < 1``.
    """
    if zm.info.task != "classification":
        raise ValueError(f"{zm.name} is a {zm.info.task} model, not a classifier")
    if num_samples is None:
        num_samples = getattr(zm.config, "eval_samples", 10)
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")

    def probs(trace: Trace) -> torch.Tensor:
        try:
            return class_probs(trace.nodes["obs"]["fn"])
        except ValueError as exc:
            raise ValueError(f"{zm.name}: {exc}") from None

    return posterior_draws(zm, x.to(zm.device), num_samples, probs, batch_size)


def _as_draws(draws: torch.Tensor) -> torch.Tensor:
    """``(S, N, C)`` probabilities; a single ``(N, C)`` table is one draw."""
    draws = torch.as_tensor(draws)
    if draws.dim() == 2:
        draws = draws.unsqueeze(0)
    if draws.dim() != 3 or draws.shape[-1] < 2 or draws.shape[0] < 1:
        raise ValueError(f"draws must be (S, N, C) or (N, C) with C >= 2, got {tuple(draws.shape)}")
    if not torch.isfinite(draws).all() or (draws < 0).any():
        raise ValueError("draws must be finite, non-negative probabilities")
    if (draws.sum(-1) - 1).abs().max() > 1e-4:
        raise ValueError("each draw's rows must sum to 1 (pass probabilities, not logits)")
    return draws


def predictive_entropy(draws: torch.Tensor) -> torch.Tensor:
    """Total uncertainty ``H[(1/S) sum_s p_s]`` per example, in nats, shape ``(N,)``.

    :param draws: ``(S, N, C)`` class probabilities (or one ``(N, C)`` table).
    """
    return Categorical(probs=_as_draws(draws).mean(0)).entropy()


def expected_entropy(draws: torch.Tensor) -> torch.Tensor:
    """Aleatoric uncertainty ``(1/S) sum_s H[p_s]`` per example, in nats, shape ``(N,)``."""
    return Categorical(probs=_as_draws(draws)).entropy().mean(0)


def mutual_information(draws: torch.Tensor) -> torch.Tensor:
    """Epistemic uncertainty, BALD's ``I[y; W | x] = H[E p] - E H[p]``, in nats, shape ``(N,)``.

    It is 0 exactly when all draws agree and at most ``log S`` and ``log C``.  Jensen makes it
    non-negative; the float round-off of the difference (``~1e-7``) is clipped at 0.
    """
    draws = _as_draws(draws)
    return (predictive_entropy(draws) - expected_entropy(draws)).clamp_min(0.0)


def uncertainty_scores(draws: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per example, larger meaning more uncertain: ``1 - max p`` of the predictive
    (``max_prob``), the predictive entropy (``entropy``), its aleatoric part (``aleatoric``) and
    the mutual information (``mutual_info``), all computed where ``draws`` lie."""
    draws = _as_draws(draws)
    total, aleatoric = predictive_entropy(draws), expected_entropy(draws)
    return {
        "max_prob": 1.0 - draws.mean(0).max(-1).values,
        "entropy": total,
        "aleatoric": aleatoric,
        "mutual_info": (total - aleatoric).clamp_min(0.0),
    }


def _probs_and_labels(probs: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    probs = _as_draws(probs).mean(0)
    y = torch.as_tensor(y, device=probs.device).long()
    if y.shape != probs.shape[:1]:
        raise ValueError(f"y must have shape ({probs.shape[0]},), got {tuple(y.shape)}")
    if y.numel() == 0:
        raise ValueError("no predictions to score")
    if (y < 0).any() or (y >= probs.shape[1]).any():
        raise ValueError(f"labels must lie in 0..{probs.shape[1] - 1}")
    return probs, y


def negative_log_likelihood(probs: torch.Tensor, y: torch.Tensor) -> float:
    """``-(1/N) sum_i log p(y_i | x_i)`` of the predictive, in nats.

    :param probs: ``(N, C)`` predictive probabilities, or ``(S, N, C)`` draws (averaged first:
        the log of the mean, never the mean of the logs).
    """
    probs, y = _probs_and_labels(probs, y)
    # the clamp keeps a confidently wrong prediction finite (-log 1e-12 = 27.6 nats)
    return -probs.gather(1, y[:, None]).clamp_min(1e-12).log().mean().item()


def brier_score(probs: torch.Tensor, y: torch.Tensor) -> float:
    """``(1/N) sum_i sum_c (p_ic - [y_i = c])^2``, Brier's (1950) multi-class score in ``[0, 2]``.

    :param probs: ``(N, C)`` predictive probabilities, or ``(S, N, C)`` draws (averaged first).
    """
    probs, y = _probs_and_labels(probs, y)
    onehot = F.one_hot(y, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).square().sum(1).mean().item()


def classification_metrics(
    draws: torch.Tensor, y: torch.Tensor, num_bins: int = 15
) -> dict[str, float]:
    """Accuracy, NLL, Brier score and ECE of the predictive ``mean_s p_s``, and the mean of
    each uncertainty score of :func:`uncertainty_scores` over the examples."""
    draws = _as_draws(draws)
    probs, y = _probs_and_labels(draws, y)
    metrics = {
        "acc": (probs.argmax(1) == y).double().mean().item(),
        "nll": negative_log_likelihood(probs, y),
        "brier": brier_score(probs, y),
        "ece": expected_calibration_error(probs, y, num_bins),
    }
    metrics.update({k: v.mean().item() for k, v in uncertainty_scores(draws).items()})
    return metrics


# --------------------------------------------------------------------------------------------
# Detection: out-of-distribution and adversarial inputs


def detection_auc(
    in_scores: torch.Tensor | np.ndarray, out_scores: torch.Tensor | np.ndarray
) -> dict[str, float]:
    """AUROC and AUPR of a score at flagging ``out_scores``' examples (the positives) against
    ``in_scores``' (the negatives), larger scores meaning "out"; computed by
    :func:`sklearn.metrics.roc_auc_score` and :func:`sklearn.metrics.average_precision_score`.

    AUROC is 0.5 for a score that cannot tell the sets apart; the AUPR of such a score is the
    fraction of positives.

    :raises ValueError: for an empty set or non-finite scores.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    a = torch.as_tensor(in_scores).detach().double().cpu().reshape(-1).numpy()
    b = torch.as_tensor(out_scores).detach().double().cpu().reshape(-1).numpy()
    if a.size == 0 or b.size == 0:
        raise ValueError("detection needs at least one score in each set")
    scores = np.concatenate([a, b])
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    labels = np.concatenate([np.zeros(a.size), np.ones(b.size)])
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "aupr": float(average_precision_score(labels, scores)),
    }


#: The shifts of :func:`shifted_inputs`.
SHIFTS = ("rotate90", "invert", "noise")


def shifted_inputs(
    x: torch.Tensor, kind: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Out-of-distribution versions of images ``x`` ``(N, C, H, W)`` with pixels in ``[0, 1]``.

    ``rotate90``: each image turned by 90 degrees (exact, no interpolation); ``invert``:
    ``1 - x``; ``noise``: uniform pixels, independent of ``x`` except for its shape.

    :param generator: the noise's CPU generator (the draw is moved to ``x``'s device).
    """
    if x.dim() != 4:
        raise ValueError(f"x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    if kind == "rotate90":
        return torch.rot90(x, 1, dims=(2, 3))
    if kind == "invert":
        return 1.0 - x
    if kind == "noise":
        return torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    raise ValueError(f"kind must be one of {SHIFTS}, got {kind!r}")


def resize_images(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Images ``(N, C, h, w)`` bilinearly resized to ``size`` (e.g. 8x8 digits to 28x28)."""
    if x.dim() != 4:
        raise ValueError(f"x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False).clamp(0, 1)


def mean_net(zm: ZooModel) -> nn.Module:
    """The deterministic network at the posterior mean (pruned where the entry prunes), from the
    entry's ``export`` hook, in eval mode on ``zm``'s device: the net an attacker differentiates.

    :raises ValueError: for an entry without ``export`` or a plain architecture.
    """
    if zm.spec.hooks.export is None or not hasattr(zm.model, "plain_net"):
        raise ValueError(f"{zm.name} has no deterministic posterior-mean network to export")
    net = zm.model.plain_net().to(zm.device)
    net.load_state_dict(zm.spec.hooks.export(zm))
    return net.eval()


def _input_grad(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # enable_grad: an attack called under no_grad (an evaluation loop) still differentiates
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(net(x), y, reduction="sum")
        # autograd.grad leaves the net's parameters' .grad untouched
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _check_attack(x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
    if not eps >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")


def fgsm(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """The fast gradient sign method: ``clip(x + eps sign(grad_x CE(net(x), y)))``.

    Goodfellow, Shlens & Szegedy (2015), "Explaining and harnessing adversarial examples", ICLR.
    An L-infinity step of size ``eps`` that increases the cross-entropy to first order.

    :param net: a deterministic classifier returning logits (put it in eval mode).
    :param bounds: the valid pixel range the result is clipped to.
    """
    _check_attack(x, y, eps)
    return (x + eps * _input_grad(net, x, y).sign()).clamp(*bounds).detach()


def pgd(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    bounds: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent in the L-infinity ball of radius ``eps`` (Madry et al. 2018,
    "Towards deep learning models resistant to adversarial attacks", ICLR).

    ``steps`` signed-gradient steps of ``step_size`` (default ``2.5 eps / steps``, Madry et al.'s
    choice), each followed by projection onto the ball and ``bounds``; from a uniform random
    point of the ball when ``random_start``.
    """
    _check_attack(x, y, eps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    x = x.detach()
    adv = x
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        adv = (x + eps * (2 * noise - 1)).clamp(*bounds)
    for _ in range(steps):
        adv = adv + step_size * _input_grad(net, adv, y).sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(*bounds).detach()
    return adv
