"""Pyro effect handlers the zoo's models and guides run under.

* :class:`~zoo.handlers.lrt.LocalReparameterization` -- Bayesian layers sample activations
  instead of weights (Kingma, Salimans & Welling 2015).
* :class:`~zoo.handlers.anneal.KLAnnealing` -- scales every latent site's log-density by
  ``beta``, the KL weight of a warm-up schedule (Bowman et al. 2016; Sønderby et al. 2016).

Both sit below the guides and the models: neither imports anything of the zoo but the other.
"""

from zoo.handlers.anneal import KLAnnealing, linear_warmup
from zoo.handlers.lrt import LocalReparameterization

__all__ = ["KLAnnealing", "LocalReparameterization", "linear_warmup"]
