"""How far to trust a guide: the VI diagnostic of Yao, Vehtari, Simpson & Gelman (2018).

"Yes, but did it work?: Evaluating variational inference", ICML 2018: draw ``theta_s ~ q``,
fit a generalized Pareto distribution to the largest importance ratios
``p(theta_s, D) / q(theta_s)`` (PSIS, Vehtari et al. 2024) and read its shape ``k``: below 0.5
the guide is close to the posterior, up to 0.7 usable, above 0.7 far from it.

The diagnostic is defined for models whose latent variables are all global, with proper priors
and a guide with a density; :class:`DiagnosticUndefined` (a ``ValueError``) says why it is not
otherwise.  torch and Pyro are imported inside the functions.

The same ratios correct PSIS-LOO for the guide (:func:`guide_loo`, :func:`reweighted_loo`):
LOO of q's draws scores q, not the posterior; weighted by ``p(theta_s, D) / q(theta_s)`` they
estimate the posterior's LOO (Magnusson, Andersen, Jonasson & Vehtari 2019).

Usage::

    from zoo.compare import guide_loo, vi_diagnostic
    diag = vi_diagnostic(zm, data, num_samples=200)
    print(diag.khat, diag.verdict)   # e.g. 0.93 unreliable (k > 0.7)
    corrected = guide_loo(zm, data, num_samples=200)
    print(corrected.elpd, corrected.se, corrected.khat)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.compare.arviz_adapter import (
    CONSTANT_DRAWS,
    KHAT_OK,
    held_out_elpd,
    held_out_summary,
    khat_verdict,
    psis_khat,
    psis_smooth,
)
from zoo.compare.pointwise import check_num_samples, log_likelihood_hook, pointwise_draws
from zoo.util import local_params

if TYPE_CHECKING:
    import torch

    from zoo.data import Dataset
    from zoo.spec import ZooModel

__all__ = [
    "DiagnosticUndefined",
    "GuideLoo",
    "VIDiagnostic",
    "base_distribution",
    "guide_loo",
    "reweighted_loo",
    "vi_diagnostic",
]


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


@dataclass
class GuideLoo:
    """PSIS-LOO of the posterior from a guide's draws, corrected by ``p(theta, D) / q(theta)``.

    :ivar elpd: the corrected ``elpd_loo``, a sum over the training points.
    :ivar se: its standard error, ``sqrt(N var_i)`` of the pointwise terms.
    :ivar pointwise: the corrected term of each point, ``(N,)``.
    :ivar pareto_k: the Pareto k of each point's ratios ``r_s / p(y_i | theta_s)``, ``(N,)``
        (``nan`` where the point's draws are constant and its term exact).
    :ivar khat: the largest of them: above 0.7 the corrected value is not to be trusted.
    :ivar vi_khat: the Pareto k of ``r_s`` alone, the VI diagnostic of Yao et al. (2018).
    :ivar log_ratios: ``log p(theta_s, D) - log q(theta_s)``, ``(S,)``.
    :ivar messages: warnings ArviZ raised.
    """

    elpd: float
    se: float
    pointwise: np.ndarray = field(repr=False)
    pareto_k: np.ndarray = field(repr=False)
    khat: float
    vi_khat: float
    log_ratios: np.ndarray = field(repr=False)
    messages: list[str] = field(default_factory=list)

    @property
    def n_high_k(self) -> int:
        """Points whose corrected term has ``k > 0.7`` (``nan``, a constant point, not counted)."""
        return int(np.sum(self.pareto_k > KHAT_OK))


def reweighted_loo(
    log_lik: np.ndarray, log_ratios: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """PSIS-LOO of the posterior from draws ``theta_s ~ q`` weighted by ``r_s = p(theta_s, D) /
    q(theta_s)``: the pointwise terms, their Pareto k and ArviZ's warnings.

    The leave-one-out posterior is ``p(theta | D_-i) ∝ p(theta, D) / p(y_i | theta)``, so the
    importance ratios from ``q`` to it are ``r_is = r_s / p(y_i | theta_s)`` (``p(D)`` cancels
    on normalizing), and

    ``p(y_i | D_-i) = E_{D_-i}[p(y_i | theta)] ≈ sum_s w_is p(y_i | theta_s)``, with ``w_is``
    the Pareto-smoothed ``r_is`` normalized over ``s`` (Vehtari, Simpson, Gelman, Yao & Gabry
    2024; Magnusson, Andersen, Jonasson & Vehtari 2019, "Bayesian leave-one-out
    cross-validation for large data", ICML, sec. 3, LOO from an approximate posterior; Vehtari,
    Gelman & Gabry 2017 for PSIS-LOO).  With ``q`` the posterior, ``r_s`` is the constant
    ``p(D)`` and this is the usual PSIS-LOO; raw PSIS-LOO of q's draws uses ``1 / p(y_i |
    theta_s)`` alone, which estimates the LOO of ``q`` taken as a posterior, not the model's.
    Each point's ``k`` reflects both corrections: above 0.7 its term is not to be trusted.

    Where ``log p(y_i | theta_s)`` varies by at most
    :data:`~zoo.compare.arviz_adapter.CONSTANT_DRAWS` over the draws, any weighted mean of the
    ``p`` is ``log mean_s p(y_i | theta_s)`` to that tolerance: the term takes that value and
    ``k`` is ``nan`` (undefined; the Pareto fit degenerates).

    :param log_lik: ``log p(y_i | theta_s)``, ``(S, N)``, ``S >= 5``.
    :param log_ratios: ``log p(theta_s, D) - log q(theta_s)``, ``(S,)``, finite.
    :returns: ``(pointwise (N,), pareto_k (N,), messages)``.
    """
    log_lik = np.asarray(log_lik, dtype=np.float64)
    log_ratios = np.asarray(log_ratios, dtype=np.float64)
    if log_lik.ndim != 2 or log_ratios.shape != log_lik.shape[:1] or log_lik.shape[0] < 5:
        raise ValueError(
            f"need log_lik (S, N) and log_ratios (S,) with S >= 5, got {log_lik.shape} and "
            f"{log_ratios.shape}"
        )
    if not np.all(np.isfinite(log_ratios)):
        raise ValueError("non-finite log importance ratios; is the fit diverged?")
    constant = np.ptp(log_lik, axis=0) <= CONSTANT_DRAWS
    pointwise = held_out_elpd(log_lik)[2]  # a constant point's term, exact to the tolerance
    k = np.full(log_lik.shape[1], np.nan)
    messages: list[str] = []
    if not constant.all():  # the Pareto fit degenerates on the constant points: not given them
        varying = log_lik[:, ~constant]
        log_w = (log_ratios[:, None] - varying).T  # (N, S): PSIS smooths over the last axis
        smoothed, k[~constant], messages = psis_smooth(log_w - log_w.max(axis=1, keepdims=True))
        terms = smoothed + varying.T
        top = terms.max(axis=1, keepdims=True)
        pointwise[~constant] = (top + np.log(np.exp(terms - top).sum(axis=1, keepdims=True)))[:, 0]
    return pointwise, k, messages


def _weighted_draws(
    zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None, latents: Mapping[str, Any], num: int
) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """``num`` guide draws of ``latents``, stacked (site -> ``(num, ...)``), and ``log p(theta_s)
    - log q(theta_s)`` of each (the priors of the latents, read on one example)."""
    import torch
    from pyro import poutine

    values, log_prior_q = [], []
    for _ in range(num):
        guide_trace = poutine.trace(zm.guide).get_trace(x[:1])
        draw = {n: guide_trace.nodes[n]["value"] for n in latents}
        log_q = sum(guide_trace.nodes[n]["fn"].log_prob(v).double().sum() for n, v in draw.items())
        model = poutine.condition(zm.model, data=draw)
        nodes = poutine.trace(model).get_trace(x[:1], None if y is None else y[:1]).nodes
        log_p = sum(nodes[n]["fn"].log_prob(v).double().sum() for n, v in draw.items())
        values.append(draw)
        log_prior_q.append(float(log_p - log_q))
    stacked = {n: torch.stack([v[n] for v in values]) for n in latents}
    return stacked, np.asarray(log_prior_q)


@local_params()
def guide_loo(
    zm: ZooModel,
    data: Dataset | torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    num_samples: int = 200,
    batch_size: int | None = None,
) -> GuideLoo:
    """PSIS-LOO of the model's posterior on the training split, from ``num_samples`` draws of
    the guide weighted by ``p(theta_s, D) / q(theta_s)`` (:func:`reweighted_loo` gives the
    math and the references).

    ``log p(theta_s, D)`` is the prior of the latents plus the sum of the float64 pointwise
    log-likelihoods (the registry entry's hook) that the LOO terms use, so the two agree.  As
    in :func:`vi_diagnostic`, point estimates (biases, a regressor's noise) are held at their
    fitted values.  Defined where the VI diagnostic is: global latents with proper priors and a
    guide with a density.

    Usage::

        corrected = guide_loo(zm, data, num_samples=200)
        corrected.elpd, corrected.se, corrected.khat   # beside the raw elpd_loo of q

    :raises ValueError: when it is undefined (:class:`DiagnosticUndefined`, as for
        :func:`vi_diagnostic`), for an entry without a pointwise log-likelihood, or for
        ``num_samples < 5``.
    """
    import torch

    from zoo.compare.checks import CHUNK_BYTES, chunk_draws  # checks imports nuts -> vi
    from zoo.data import as_dataset
    from zoo.spec import check_compatible

    num_samples = check_num_samples(num_samples)
    if num_samples < 5:
        raise ValueError(f"the Pareto fit needs num_samples >= 5, got {num_samples}")
    ds = as_dataset(data, y)
    check_compatible(zm, ds)
    log_likelihood_hook(zm)
    x_all = ds.x_train.to(zm.device)
    y_all = None if ds.y_train is None or zm.spec.observes != "y" else ds.y_train.to(zm.device)
    was_training = zm.model.training
    zm.eval()
    try:
        with torch.no_grad():
            latents = _global_latents(zm, x_all[:2], None if y_all is None else y_all[:2])
            rows, log_prior_q = [], []
            # a chunk's stacked draws of the latents and its log-likelihoods, each ~CHUNK_BYTES
            size = sum(
                node["value"].numel() * node["value"].element_size() for node in latents.values()
            )
            step = min(chunk_draws(len(x_all)), max(1, CHUNK_BYTES // max(1, size)))
            for start in range(0, num_samples, step):
                k = min(step, num_samples - start)
                samples, lpq = _weighted_draws(zm, x_all, y_all, latents, k)
                draws = pointwise_draws(zm, x_all, y_all, k, batch_size, samples=samples)
                rows.append(draws.log_lik.numpy())
                log_prior_q.append(lpq)
    finally:
        zm.train(was_training)
    log_lik = np.concatenate(rows)
    log_ratios = np.concatenate(log_prior_q) + log_lik.sum(axis=1)
    pointwise, k, messages = reweighted_loo(log_lik, log_ratios)
    vi_khat, vi_messages = psis_khat(log_ratios)
    elpd, se = held_out_summary(pointwise)
    return GuideLoo(
        elpd=elpd,
        se=se,
        pointwise=pointwise,
        pareto_k=k,
        khat=float(np.nanmax(k)) if (~np.isnan(k)).any() else math.nan,
        vi_khat=vi_khat,
        log_ratios=log_ratios,
        messages=messages + vi_messages,
    )
