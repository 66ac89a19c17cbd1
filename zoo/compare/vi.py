"""How far to trust a guide: the VI diagnostic of Yao, Vehtari, Simpson & Gelman (2018).

"Yes, but did it work?: Evaluating variational inference", ICML 2018: draw ``theta_s ~ q``,
fit a generalized Pareto distribution to the largest importance ratios
``p(theta_s, D) / q(theta_s)`` (PSIS, Vehtari et al. 2024) and read its shape ``k``: below 0.5
the guide is close to the posterior, up to 0.7 usable, above 0.7 far from it.

The diagnostic is defined for models whose latent variables are all global, with proper priors
and a guide with a density; :class:`DiagnosticUndefined` (a ``ValueError``) says why it is not
otherwise.  torch and Pyro are imported inside the functions.

Usage::

    from zoo.compare import vi_diagnostic
    diag = vi_diagnostic(zm, data, num_samples=200)
    print(diag.khat, diag.verdict)   # e.g. 0.93 unreliable (k > 0.7)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.compare.arviz_adapter import khat_verdict, psis_khat
from zoo.compare.pointwise import check_num_samples
from zoo.util import local_params

if TYPE_CHECKING:
    import torch

    from zoo.data import Dataset
    from zoo.spec import ZooModel

__all__ = ["DiagnosticUndefined", "VIDiagnostic", "base_distribution", "vi_diagnostic"]


class DiagnosticUndefined(ValueError):
    """The VI diagnostic does not apply to this model or guide (the message says why)."""


@dataclass
class VIDiagnostic:
    """The Pareto-k diagnostic of a guide (Yao, Vehtari, Simpson & Gelman 2018).

    :ivar khat: Pareto shape of the importance ratios ``p(theta, D) / q(theta)``.
    :ivar verdict: < 0.5 good, 0.5-0.7 ok, > 0.7 the guide is far from the posterior.
    :ivar log_ratios: ``log p(theta_s, D) - log q(theta_s)`` per draw, ``(S,)``.
    :ivar messages: warnings ArviZ raised.
    """

    khat: float
    verdict: str
    log_ratios: np.ndarray = field(repr=False)
    messages: list[str] = field(default_factory=list)


def base_distribution(fn: Any) -> Any:
    """The distribution under Pyro's ``Independent``, ``expand`` and ``mask`` wrappers of a
    sample site's ``fn``, to recognize its family (an improper prior, a dropout weight)."""
    import pyro.distributions as dist

    while isinstance(fn, dist.Independent | dist.ExpandedDistribution | dist.MaskedDistribution):
        fn = fn.base_dist
    return fn


def _global_latents(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None):
    """One guide draw and the model's trace replayed on it, after checking the diagnostic
    applies: global latents only, each with a proper prior and a guide density."""
    from pyro import poutine

    from guides.dropout import DropoutWeight
    from zoo.priors import ImproperLogUniform

    guide_trace = poutine.trace(zm.guide).get_trace(x, y)
    latents = {
        name: node
        for name, node in guide_trace.nodes.items()
        if node["type"] == "sample" and not node["is_observed"]
    }
    local = [n for n, node in latents.items() if node["cond_indep_stack"]]
    if local:
        raise DiagnosticUndefined(
            f"{zm.name} ({zm.guide_name}) has local latent variables {local}: the importance "
            "ratio p(theta, D) / q(theta) needs them integrated out, which is defined here only "
            "for models whose latent variables are all global"
        )
    if not latents:
        raise DiagnosticUndefined(
            f"{zm.name} ({zm.guide_name}) has no global latent variable: its parameters are "
            "point estimates, so there is no posterior approximation to diagnose"
        )
    for name, node in latents.items():
        if isinstance(base_distribution(node["fn"]), DropoutWeight):
            raise DiagnosticUndefined(
                f"{zm.name} ({zm.guide_name}): MC dropout's q({name}) is a mixture of point "
                "masses with no density, so log q(theta) and the importance ratio are undefined"
            )
    model_trace = poutine.trace(poutine.replay(zm.model, trace=guide_trace)).get_trace(x, y)
    for name in latents:
        if isinstance(base_distribution(model_trace.nodes[name]["fn"]), ImproperLogUniform):
            raise DiagnosticUndefined(
                f"{zm.name} ({zm.guide_name}): the log-uniform prior on {name} is improper "
                "(it has no normalizer), so log p(theta, D) and the importance ratio are "
                "undefined; the diagnostic needs a proper prior such as Normal"
            )
    return latents


@local_params()
def vi_diagnostic(
    zm: ZooModel,
    data: Dataset | torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    num_samples: int = 200,
    batch_size: int = 2000,
) -> VIDiagnostic:
    """How far to trust a guide: the PSIS Pareto k of ``log p(theta_s, D) - log q(theta_s)``.

    Yao, Vehtari, Simpson & Gelman (2018), "Yes, but did it work?: Evaluating variational
    inference", ICML.  ``theta_s ~ q``; ``log p(theta, D)`` is the prior plus the likelihood of
    the whole training split, summed in batches.  ``k < 0.5``: the guide is close to the
    posterior; ``0.5 <= k <= 0.7``: usable; ``k > 0.7``: far from it (importance sampling from q
    would not recover the posterior).  Mean-field guides of large networks are usually > 0.7.

    Point estimates (the BNNs' biases, a regressor's noise) are held at their fitted values: the
    diagnostic is about ``q`` over the latent weights given them.

    :raises ValueError: when it is undefined (:class:`DiagnosticUndefined`): an improper prior
        (log-uniform), a guide without a density (MC dropout), local latent variables (PPCA),
        no latent variables; or for ``num_samples < 5``.
    """
    import torch
    from pyro import poutine

    from zoo.data import as_dataset
    from zoo.spec import check_compatible

    num_samples = check_num_samples(num_samples)
    if num_samples < 5:
        raise ValueError(f"the Pareto fit needs num_samples >= 5, got {num_samples}")
    ds = as_dataset(data, y)
    check_compatible(zm, ds)
    device = zm.device
    x_all = ds.x_train.to(device)
    y_all = None if ds.y_train is None or zm.info.task == "unsupervised" else ds.y_train.to(device)
    was_training = zm.model.training
    zm.eval()
    try:
        with torch.no_grad():
            latents = _global_latents(zm, x_all[:2], None if y_all is None else y_all[:2])
            ratios = []
            for _ in range(num_samples):
                guide_trace = poutine.trace(zm.guide).get_trace(x_all[:1])
                values = {n: guide_trace.nodes[n]["value"] for n in latents}
                log_q = sum(guide_trace.nodes[n]["fn"].log_prob(v).sum() for n, v in values.items())
                model = poutine.condition(zm.model, data=values)
                log_joint = 0.0
                for start in range(0, len(x_all), batch_size):
                    xb = x_all[start : start + batch_size]
                    yb = None if y_all is None else y_all[start : start + batch_size]
                    trace = poutine.trace(model).get_trace(xb, yb)
                    for name, node in trace.nodes.items():
                        if node["type"] != "sample":
                            continue
                        lp = node["fn"].log_prob(node["value"]).sum()
                        if name in values:
                            # the prior once, on the first batch
                            log_joint = log_joint + (lp if start == 0 else 0.0)
                        else:
                            log_joint = log_joint + lp
                ratios.append(float(log_joint - log_q))
    finally:
        zm.train(was_training)
    log_ratios = np.asarray(ratios)
    if not np.all(np.isfinite(log_ratios)):
        raise ValueError(f"{zm.name}: non-finite log importance ratios; is the fit diverged?")
    k, messages = psis_khat(log_ratios)
    return VIDiagnostic(khat=k, verdict=khat_verdict(k), log_ratios=log_ratios, messages=messages)
