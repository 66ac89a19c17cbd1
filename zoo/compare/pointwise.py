"""Pointwise log-likelihoods of zoo models and their ArviZ containers.

``log p(y_i | x_i, theta_s)`` for ``S`` draws ``theta_s`` of a fitted model's guide (or given
posterior samples, such as NUTS's), each draw shared by every example, shape ``(S, N)``, as
PSIS-LOO and WAIC assume (Vehtari, Gelman & Gabry 2017).  Each registry entry scores its own
model through its ``log_likelihood`` hook; this module runs the hook in evaluation mode under
``no_grad`` and checks what it returns.

* :func:`pointwise_log_likelihood` -- the ``(S, N)`` tensor.
* :func:`to_inference_data` -- the same draws as ArviZ's container (:func:`inference_data`),
  with the named low-dimensional quantities of each draw (weight norms, never the weights).
* :func:`pointwise_draws`, :func:`draws_inference_data`, :func:`check_num_samples`,
  :func:`log_likelihood_hook` -- the steps, shared with the comparison table.

torch is imported inside the functions, so that importing :mod:`zoo.compare` stays light.

Usage::

    from zoo.compare import pointwise_log_likelihood, to_inference_data
    log_lik = pointwise_log_likelihood(zm, data.x_test, data.y_test, num_samples=200)
    idata = to_inference_data(zm, data.x_train, data.y_train)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.compare.arviz_adapter import inference_data
from zoo.util import local_params

if TYPE_CHECKING:
    import torch

    from zoo.spec import PointwiseDraws, ZooModel

__all__ = [
    "check_num_samples",
    "draws_inference_data",
    "log_likelihood_hook",
    "pointwise_draws",
    "pointwise_log_likelihood",
    "to_inference_data",
]


def check_num_samples(num_samples: Any) -> int:
    """``num_samples`` as an ``int``, refused unless it is an integer of at least 1.

    :raises ValueError: for a bool, a non-integer, or a count below 1.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer):
        raise ValueError(f"num_samples must be an integer, got {num_samples!r}")
    if num_samples < 1:
        raise ValueError(
            f"num_samples must be at least 1, got {num_samples}: a guide with no draws gives no "
            "pointwise log-likelihood"
        )
    return int(num_samples)


def log_likelihood_hook(zm: ZooModel) -> Callable[..., PointwiseDraws]:
    """The registry entry's ``log_likelihood`` hook of ``zm``.

    :raises ValueError: when the entry sets none, so that the model cannot be compared.
    """
    hook = zm.spec.hooks.log_likelihood
    if hook is None:
        raise ValueError(
            f"{zm.name} has no pointwise log-likelihood (its registry entry sets no "
            "log_likelihood hook), so it cannot be compared with ArviZ"
        )
    return hook


@local_params()
def pointwise_draws(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    num_samples: int,
    batch_size: int | None = None,
    samples: Mapping[str, torch.Tensor] | None = None,
) -> PointwiseDraws:
    """The log-likelihood hook of ``zm`` on ``(x, y)``, in evaluation mode under ``no_grad``.

    ``num_samples`` guide draws, or the given posterior ``samples`` (site -> ``(S, ...)``, as
    a NUTS reference holds them), on the model's device; the training mode is restored after.

    :raises ValueError: for a registry entry without a ``log_likelihood`` hook.
    :raises RuntimeError: when the hook's ``log_lik`` is not ``(S, len(x))``.
    """
    import torch

    hook = log_likelihood_hook(zm)
    device = zm.device
    x = x.to(device)
    y = None if y is None else y.to(device)
    was_training = zm.model.training
    zm.eval()
    try:
        with torch.no_grad():
            out = hook(zm, x, y, num_samples, batch_size, samples)
    finally:
        zm.train(was_training)
    expected = num_samples if samples is None else len(next(iter(samples.values())))
    if tuple(out.log_lik.shape) != (expected, len(x)):
        raise RuntimeError(f"{zm.name}: log_likelihood hook returned {tuple(out.log_lik.shape)}")
    return out


def pointwise_log_likelihood(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 200,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``log p(y_i | x_i, theta_s)`` for ``S = num_samples`` draws of the guide, ``(S, N)``.

    Every example is scored under the same global draw ``theta_s``, which PSIS-LOO and WAIC
    assume; the local reparameterization used in training (independent noise per example) is
    therefore not used here.  The computation runs in batches on the model's device under
    ``no_grad`` and returns float64 on the CPU.  For an unsupervised model (PPCA) ``y`` is
    ``None`` and the score is ``log p(x_i | theta_s)``.

    :raises ValueError: for ``num_samples < 1``, mismatched ``x`` and ``y``, or a registry entry
        without a ``log_likelihood`` hook.
    """
    num_samples = check_num_samples(num_samples)
    _check_targets(zm, x, y)
    return pointwise_draws(zm, x, y, num_samples, batch_size).log_lik


def _check_targets(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None) -> None:
    """The entry can be scored, and a supervised one has one target per example."""
    log_likelihood_hook(zm)
    if zm.spec.observes == "y":
        if y is None:
            raise ValueError(f"{zm.name} is a {zm.info.task} model: pass the targets y")
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")


def _observed(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None) -> np.ndarray:
    target = x.reshape(len(x), -1) if zm.spec.observes == "x" else y
    return target.detach().cpu().numpy()


def draws_inference_data(
    zm: ZooModel,
    draws: PointwiseDraws,
    x: torch.Tensor,
    y: torch.Tensor | None,
    attrs: Mapping[str, Any],
    num_chains: int = 1,
) -> Any:
    """:func:`inference_data` of hook output ``draws`` on ``(x, y)``: its log-likelihoods, the
    observations (the targets, or the flattened inputs of a model of ``x``) and the named
    per-draw quantities, split into ``num_chains`` chains, ``attrs`` on every group."""
    return inference_data(
        draws.log_lik.numpy(),
        _observed(zm, x, y),
        {k: v.numpy() for k, v in draws.posterior.items()},
        draws.dims,
        num_chains=num_chains,
        attrs=attrs,
    )


def to_inference_data(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    num_samples: int = 200,
    batch_size: int | None = None,
) -> Any:
    """ArviZ's container (:func:`inference_data`) for ``num_samples`` guide draws on ``(x, y)``.

    Usage::

        idata = to_inference_data(zm, data.x_train, data.y_train)
        az.loo(idata)   # or zoo.compare.loo(idata), which keeps ArviZ's warnings
    """
    num_samples = check_num_samples(num_samples)
    _check_targets(zm, x, y)
    draws = pointwise_draws(zm, x, y, num_samples, batch_size)
    return draws_inference_data(zm, draws, x, y, {"model": zm.name, "guide": zm.guide_name})
