"""``TraceMeanField_ELBO`` that scores only the sites its estimate reads.

Pyro's :class:`~pyro.infer.TraceMeanField_ELBO` (Pyro 1.9) builds its traces with
``get_importance_trace``, which computes ``log p(z)`` at every model site and ``log q(z)``
(with its score parts) at every guide site, and then uses, at a latent site with a registered
``KL(q || p)``, only that KL.  For a Bayesian network those unused terms are the log-densities
of every weight: leaving them out makes a SparseVD LeNet-300-100 step 11 % faster at batch 100
and 5 % at batch 1024 (``python -m benchmarks.overhead --ablation``).

:class:`MeanFieldELBO` computes the same estimator,

    ELBO = sum_observed log p(x | z) - sum_{analytic} KL(q || p) + sum_{others} (log p - log q),

but scores a latent site only when it has no closed-form KL.  Which sites are analytic is
decided once per pair of distribution types (by asking ``kl_divergence``).

:func:`make_elbo` builds any of the four objectives the trainer knows by name
(:data:`ELBO_NAMES`).

Usage::

    elbo = MeanFieldELBO(max_plate_nesting=1)
    loss = elbo.loss_and_grads(model, guide, x, y)
    elbo = make_elbo("traceenum", max_plate_nesting=2)
"""

from __future__ import annotations

from typing import Any

from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import kl_divergence

__all__ = ["ELBO_NAMES", "MeanFieldELBO", "make_elbo"]

#: The ELBO objectives the trainer understands, by the names configs use.
ELBO_NAMES = ("trace", "meanfield", "tracegraph", "traceenum")


def _types(fn: Any) -> tuple[type, ...]:
    chain = [type(fn)]
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
        chain.append(type(fn))
    return tuple(chain)


class MeanFieldELBO(TraceMeanField_ELBO):
    """:class:`~pyro.infer.TraceMeanField_ELBO` without the log-densities it never reads.

    Same constructor, same estimator and gradients (``tests/test_elbo.py`` checks them against
    Pyro's class); the model trace scores only its observed sites and the latent sites without
    a registered KL, the guide trace only the latter.  With Pyro's validation on, or vectorized
    particles, it is Pyro's class unchanged (validation reads every site's score parts).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._has_kl: dict[tuple, bool] = {}

    def _analytic(self, q: Any, p: Any) -> bool:
        key = (_types(q), _types(p))
        if key not in self._has_kl:
            try:
                kl_divergence(q, p)
                self._has_kl[key] = True
            except NotImplementedError:
                self._has_kl[key] = False
        return self._has_kl[key]

    def _analytic_sites(self, model_trace: Any, guide_trace: Any) -> set[str]:
        analytic = {
            name
            for name, site in model_trace.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and name in guide_trace.nodes
            and self._analytic(guide_trace.nodes[name]["fn"], site["fn"])
        }
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and name not in analytic:
                if site["infer"].get("weight_not_drawn"):
                    raise ValueError(
                        f"site {name!r} holds the posterior mean, not a draw "
                        "(LocalReparameterization(draw_weights=False)), but its KL has no closed "
                        "form: register one with torch.distributions.kl.register_kl, or draw "
                        "the weights"
                    )
        return analytic

    def _get_trace(self, model, guide, args, kwargs):
        # Pyro's vectorized path wraps the traces in a plate, and with validation on its loss
        # reads every guide site's score parts (to check reparameterization): both as Pyro does.
        if self.vectorize_particles or is_validation_enabled():
            model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
            self._analytic_sites(model_trace, guide_trace)
            return model_trace, guide_trace
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        analytic = self._analytic_sites(model_trace, guide_trace)
        model_trace.compute_log_prob(lambda name, site: name not in analytic)
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and name not in analytic and "score_parts" not in site:
                parts = site["fn"].score_parts(site["value"], *site["args"], **site["kwargs"])
                site["unscaled_log_prob"] = parts.log_prob
                site["score_parts"] = parts.scale_and_mask(site["scale"], site["mask"])
                site["log_prob"] = site["score_parts"].log_prob
                site["log_prob_sum"] = site["log_prob"].sum()
        return model_trace, guide_trace


def make_elbo(
    name: str,
    *,
    num_particles: int = 1,
    vectorize_particles: bool = False,
    max_plate_nesting: int = 1,
) -> ELBO:
    """The Pyro ELBO object for ``name`` (one of :data:`ELBO_NAMES`)."""
    classes = {
        "trace": Trace_ELBO,
        # Pyro's TraceMeanField_ELBO, without the log-densities it computes and never reads
        "meanfield": MeanFieldELBO,
        "tracegraph": TraceGraph_ELBO,
        "traceenum": TraceEnum_ELBO,
    }
    if name not in classes:
        raise ValueError(f"elbo must be one of {ELBO_NAMES}, got {name!r}")
    return classes[name](
        num_particles=num_particles,
        vectorize_particles=vectorize_particles,
        max_plate_nesting=max_plate_nesting,
    )
