"""The posterior over a Bayesian net's weights: draws, the mean net, pointwise log-likelihoods.

These read the guide of a net made Bayesian by :mod:`zoo.models.bnn` (a registry entry or a
user's net from :func:`zoo.from_module`): :func:`predict` runs the net under fresh posterior
draws (per example under the local reparameterization, Kingma et al. 2015),
:func:`mean_net_outputs` with the pruned posterior means (Molchanov et al. 2017), and
:func:`pointwise_log_likelihood` scores every example under the same global draws, as PSIS-LOO
(Vehtari, Gelman & Gabry 2017) needs.

Usage::

    from zoo.models.weights import mean_net_outputs, pointwise_log_likelihood, predict
    draws = predict(zm, x, num_samples=20)            # (S, N, outputs)
    ll = pointwise_log_likelihood(zm, x, y, num_samples=100).log_lik   # (S, N)
"""

from __future__ import annotations

import torch
from pyro import poutine

from guides.dropout import WeightGuide
from zoo.likelihoods import ClassLikelihood
from zoo.spec import PointwiseDraws, ZooModel, posterior_draws
from zoo.util import local_params

__all__ = ["mean_net_outputs", "pointwise_log_likelihood", "predict", "weight_guide"]


def weight_guide(zm: ZooModel) -> WeightGuide:
    """``zm``'s guide, the :class:`guides.dropout.WeightGuide` that holds ``q(W)``.

    :raises ValueError: when the guide is not a weight guide.
    """
    if not isinstance(zm.guide, WeightGuide):
        raise ValueError(f"{zm.name} with guide {zm.guide_name!r} has no weight guide")
    return zm.guide


def _batches(x: torch.Tensor, size: int):
    for start in range(0, x.shape[0], size):
        yield x[start : start + size]


@local_params()
@torch.no_grad()
def predict(zm: ZooModel, x: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
    """Network outputs for ``num_samples`` posterior draws, shape ``(S, N, ...)``.

    Each minibatch is run through a fresh guide draw (under the entry's handler, so with the
    local reparameterization the draws are per example); MC dropout averages masks this way.
    """
    num_samples = zm.config.eval_samples if num_samples is None else num_samples
    return posterior_draws(zm, x, num_samples, lambda trace: trace.nodes["_RETURN"]["value"])


@local_params()
@torch.no_grad()
def mean_net_outputs(zm: ZooModel, x: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """Outputs of the model with its weights fixed at the pruned posterior means."""
    threshold = zm.config.threshold if threshold is None else threshold
    weights = weight_guide(zm).mean_weights(threshold)
    model = poutine.condition(zm.model, data=weights)
    return torch.cat([model(xb) for xb in _batches(x, zm.config.eval_batch_size)])


def _guide_draws(zm: ZooModel, x: torch.Tensor, num_samples: int):
    """``num_samples`` draws of all the weights from the raw guide (no LRT handler): one global
    draw per ``s``, the object PSIS-LOO and the importance ratios of Yao et al. (2018) need."""
    for _ in range(num_samples):
        trace = poutine.trace(zm.guide).get_trace(x[:1])
        yield {
            name: node["value"]
            for name, node in trace.nodes.items()
            if node["type"] == "sample" and not node["is_observed"]
        }


@local_params()
@torch.no_grad()
def pointwise_log_likelihood(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor,
    num_samples: int,
    batch_size: int | None = None,
    samples: dict[str, torch.Tensor] | None = None,
) -> PointwiseDraws:
    """``log p(y_i | x_i, W_s)`` for ``S`` weight draws, each shared by all examples.

    The draws come from the guide itself (``poutine.trace`` of the raw guide), never through
    the local reparameterization handler, which would give every example its own noise: PSIS-LOO
    (Vehtari, Gelman & Gabry 2017) needs one global draw scored on every example.  For MC dropout
    that is one set of masks per draw.  The model is conditioned on the draw and run over ``x``
    in batches; biases are the fitted point estimates, and a regressor's noise is its learned one.
    The scores are float64, formed from the net's outputs by the likelihood's
    :meth:`~zoo.likelihoods.Likelihood.pointwise_log_prob` (logits to log-probabilities, never
    through probabilities), so a confident point scores a tiny negative number that differs
    between draws, not a float32 0.0 in every draw (whose Pareto k would be infinite).

    :param samples: weight draws to score instead, site name -> ``(S, ...)`` (e.g. from NUTS).
    :returns: :class:`~zoo.spec.PointwiseDraws` with ``log_lik`` ``(S, N)``, the Frobenius
        norm of every weight tensor per draw (``weight_norm``, dim ``layer``) and, for
        regressors, the noise scale; ``predictive_mean`` the draws' average class probabilities
        (or regression means).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    batch_size = zm.config.eval_batch_size if batch_size is None else batch_size
    if samples is None:
        draws = _guide_draws(zm, x, num_samples)
    else:
        num_samples = len(next(iter(samples.values())))
        draws = ({k: v[s] for k, v in samples.items()} for s in range(num_samples))
    sites: list[str] | None = None
    rows, norms = [], []
    mean = None
    likelihood = zm.model.likelihood
    classify = isinstance(likelihood, ClassLikelihood)
    for weights in draws:
        if sites is None:
            sites = list(weights)
        model = poutine.condition(zm.model, data=weights)
        lps, outs = [], []
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            # the net's outputs, scored in float64 from log-probabilities (never 0 in float32)
            net_out = poutine.trace(model).get_trace(xb, yb).nodes["_RETURN"]["value"].double()
            lps.append(likelihood.pointwise_log_prob(net_out, yb))
            outs.append(likelihood.class_log_probs(net_out).exp() if classify else net_out[:, 0])
        rows.append(torch.cat(lps))
        out = torch.cat(outs)
        mean = out if mean is None else mean + out
        norms.append(torch.stack([weights[k].double().norm() for k in sites]))
    log_lik = torch.stack(rows).cpu()
    posterior = {"weight_norm": torch.stack(norms).cpu()}
    dims = {"weight_norm": ("layer", list(sites))}
    if not classify:
        noise = zm.model.likelihood.noise.detach().double().cpu()
        posterior["noise"] = noise.expand(num_samples).clone()
    return PointwiseDraws(
        log_lik=log_lik,
        posterior=posterior,
        dims=dims,
        predictive_mean=(mean / num_samples).cpu(),
    )
