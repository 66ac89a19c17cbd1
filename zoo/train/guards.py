"""The trainer's guards: against a diverged run (non-finite gradients before an update,
non-finite parameters after one), and of the random stream while it evaluates.

A step whose loss and gradients are finite can still leave non-finite parameters behind (an
overflowing update); :class:`zoo.train.Trainer` checks the parameters before every checkpoint
and at every epoch's end, so that such a state is never saved nor reported as a result.

Usage::

    from zoo.train.guards import grads_finite, params_finite
    loss.backward()
    ok = grads_finite(params) and params_finite(params)
"""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.data import Dataset
from zoo.spec import ZooModel
from zoo.train.checkpoint import rng_preserved
from zoo.train.config import DivergenceError

__all__ = ["divergence_error", "evaluate_test", "grads_finite", "params_finite"]


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    if not tensors:
        return True
    norms = torch._foreach_norm(tensors)
    return bool(torch.isfinite(torch.stack(norms)).all())


def grads_finite(params: list[torch.Tensor]) -> bool:
    """Whether every gradient of ``params`` is finite (those without one are skipped), from
    one norm per tensor: a single device-to-host copy however many tensors there are."""
    return _all_finite([p.grad for p in params if p.grad is not None])


def params_finite(params: list[torch.Tensor]) -> bool:
    """Whether every value of ``params`` is finite, from one norm per tensor (one copy)."""
    with torch.no_grad():
        return _all_finite([p.detach() for p in params])


def evaluate_test(zm: ZooModel, data: Dataset) -> dict[str, float]:
    """The family's metrics on the test split, prefixed ``test_``, in eval mode.

    Evaluation draws (guide samples, MC predictions) from a stream put back afterwards: the
    same seed gives the same parameters whatever ``eval_every`` is.
    """
    zm.eval()
    try:
        with rng_preserved():
            metrics = zm.evaluate(data, "test")
    finally:
        zm.train()
    return {f"test_{k}": float(v) for k, v in metrics.items()}


def divergence_error(
    name: str, what: str, step: int, epoch: int, pos: int, path: Path | None
) -> DivergenceError:
    """The error a diverged run stops with: where (``step``, ``epoch``, ``pos`` in the epoch),
    ``what`` was not finite, and the last good checkpoint at ``path`` if it exists.

    Usage::

        raise divergence_error("logreg", "loss nan", 12, 0, 12, None)
    """
    kept = path if path is not None and path.exists() else None
    note = (
        f"The last good checkpoint is kept at {path}."
        if kept is not None
        else "No checkpoint was written before it."
    )
    return DivergenceError(
        f"{name} diverged at step {step} (epoch {epoch}, batch {pos}): {what}. "
        f"Training stopped. {note} Try a lower lr, clip_norm or a KL warm-up.",
        step,
        kept,
    )
