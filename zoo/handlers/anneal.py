"""KL annealing as a Pyro effect handler (Bowman et al. 2016; Sønderby et al. 2016).

The trainer warms the KL term up from 0 to its final weight.  Scaling every latent sample site
in both model and guide by ``beta`` weights exactly the KL part of any ELBO estimator:

    log p(x | z) + log p(z) - log q(z)   ->   log p(x | z) + beta * (log p(z) - log q(z))

Usage::

    anneal = KLAnnealing()
    model, guide = anneal(model), anneal(guide)
    anneal.beta = 0.1                       # before each step
    loss = elbo.loss_and_grads(model, guide, x, y)
"""

from __future__ import annotations

from pyro.poutine.messenger import Messenger

__all__ = ["KLAnnealing"]


class KLAnnealing(Messenger):
    """Multiplies the log-density of every latent (unobserved, not enumerated) site by ``beta``.

    Applied to model and guide alike, it turns ``log p(x|z) + log p(z) - log q(z)`` into
    ``log p(x|z) + beta (log p(z) - log q(z))``, i.e. the KL weight, for any ELBO estimator.
    Enumerated sites are left alone: they are summed out exactly, not part of the KL.

    :ivar beta: the current KL weight (1 leaves the ELBO unchanged).
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def _process_message(self, msg: dict) -> None:
        if (
            msg["type"] == "sample"
            and not msg["is_observed"]
            and not msg["infer"].get("enumerate")
            and not msg["infer"].get("_do_not_score")
        ):
            msg["scale"] = self.beta * msg["scale"]
