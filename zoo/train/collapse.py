"""Collapse detection: a run whose KL term pruned every weight before the net learnt anything.

Sparse variational dropout (Molchanov, Ashukha & Vetrov 2017) trained without a KL warm-up, with
too high a learning rate or for too few steps can let the KL term win the race against the
likelihood: the dropout rates of nearly all weights go to one and the net predicts a constant.
Its pruning report then shows a huge compression of a net that has learnt nothing.  :func:`fit`
checks for it after every run and warns with a :class:`CollapseWarning`; ``FitResult.collapse``
holds the same message.

The check is generic: it runs the family's metrics on (up to :data:`MAX_EXAMPLES`, evenly spaced)
training examples and needs them to report ``acc`` and ``sparsity`` (the pruned fraction of the
Bayesian weights) for a classifier; other entries are skipped.  A run has collapsed when

    sparsity >= 0.99   and   accuracy <= chance + 0.05

where chance is the share of the most frequent class among those examples (what a constant
prediction scores), at least ``1 / C``.  On labels that hold nothing to learn (the random-label
benchmark, ``benchmarks/random_labels.py``) this is the expected outcome, and the benchmark
silences the warning.

Usage::

    import warnings
    from zoo.train import CollapseWarning, check_collapse, fit
    result = fit(zm, data, num_epochs=5, lr=0.1)        # warns CollapseWarning on collapse
    result.collapsed, result.collapse                    # True, "... collapsed: ..."
    check_collapse(zm, data)                             # the same check, by hand
"""

from __future__ import annotations

from typing import Any

import torch

from zoo.data import Dataset
from zoo.spec import ZooModel

__all__ = [
    "CHANCE_MARGIN",
    "COLLAPSED_SPARSITY",
    "MAX_EXAMPLES",
    "CollapseWarning",
    "check_collapse",
]

#: The pruned fraction of the Bayesian weights from which a run may have collapsed.
COLLAPSED_SPARSITY = 0.99
#: How far above chance the training accuracy of a collapsed run may be.
CHANCE_MARGIN = 0.05
#: The training examples the check scores, at most (evenly spaced over the split).
MAX_EXAMPLES = 1000


class CollapseWarning(UserWarning):
    """A run pruned nearly every weight while its training accuracy sits at chance."""


def check_collapse(
    zm: ZooModel,
    data: Dataset,
    config: Any = None,
    *,
    max_examples: int = MAX_EXAMPLES,
) -> str | None:
    """The diagnosis of a collapsed run of ``zm`` on ``data``, or ``None`` when it has not
    collapsed or the check does not apply (not a classifier, or metrics without ``acc`` and
    ``sparsity``).

    :param config: the run's :class:`~zoo.train.TrainConfig`, quoted in the message.
    :param max_examples: training examples scored, evenly spaced over the split (no draw
        from the random stream picks them).
    """
    info = zm.info
    if info.task != "classification" or not info.num_classes or zm.spec.hooks.metrics is None:
        return None
    if data.y_train is None or data.num_train == 0:
        return None
    if _pruned_fraction(zm) < COLLAPSED_SPARSITY:
        return None  # too few weights pruned: no need to score the training examples
    n = min(data.num_train, max_examples)
    idx = torch.linspace(0, data.num_train - 1, n).round().long().to(data.x_train.device)
    x, y = data.x_train.index_select(0, idx), data.y_train.index_select(0, idx)
    was_training = zm.model.training
    zm.eval()
    try:
        metrics = zm.evaluate(x, y)
    finally:
        zm.train(was_training)
    if "acc" not in metrics or "sparsity" not in metrics:
        return None
    acc, sparsity = float(metrics["acc"]), float(metrics["sparsity"])
    chance = max(1.0 / info.num_classes, torch.bincount(y).max().item() / n)
    if sparsity < COLLAPSED_SPARSITY or acc > chance + CHANCE_MARGIN:
        return None
    return _message(zm, acc, sparsity, chance, n, config)


def _pruned_fraction(zm: ZooModel) -> float:
    # The sparsity the metrics report, from the guide's masks at the model's threshold, without
    # scoring the training set (0.16 s, a tenth of a 20-epoch digits fit); 1 (no shortcut) for
    # a guide without masks.
    masks = getattr(zm.guide, "masks", None)
    threshold = getattr(zm.config, "threshold", None)
    if masks is None or threshold is None:
        return 1.0
    kept = total = 0
    with torch.no_grad():
        for mask in masks(threshold).values():
            kept += int(mask.sum())
            total += mask.numel()
    return 1.0 - kept / total if total else 1.0


def _message(zm: ZooModel, acc: float, sparsity: float, chance: float, n: int, config: Any) -> str:
    run = ""
    if config is not None:
        warmup = (
            "no KL warm-up"
            if config.kl_warmup_end == 0
            else f"kl_warmup_start={config.kl_warmup_start}, kl_warmup_end={config.kl_warmup_end}"
        )
        run = f" (this run: {warmup}, lr={config.lr}, {config.num_epochs} epochs)"
    return (
        f"{zm.name} collapsed: {sparsity:.2%} of its Bayesian weights are pruned and its "
        f"training accuracy is {acc:.1%} on {n} training examples, chance level "
        f"({chance:.1%} + a {CHANCE_MARGIN:.0%} margin, {zm.info.num_classes} classes). "
        "Cause: the KL term overwhelmed the likelihood before the net learnt anything: no or "
        f"too short a KL warm-up, too high a learning rate, or too short a run{run}. "
        "Fix: warm the KL up (kl_warmup_end at a tenth of the epochs or more; "
        "zoo.handlers.KLAnnealing.linear in a plain Pyro loop), lower lr, or train longer. "
        "Its compression counts the weights of a net that predicts a constant. (On labels "
        "that hold nothing to learn, such as shuffled ones, this is the expected outcome.)"
    )
