"""KL annealing as a Pyro effect handler (Bowman et al. 2016; Sønderby et al. 2016).

A KL warm-up weights the KL term by ``beta`` rising from 0 to 1 over the first steps, so that
the likelihood shapes the posterior before the prior pulls it back: without it, sparse
variational dropout prunes every weight of a net that has not learnt anything yet (Molchanov
et al. 2017 warm the KL up for this reason; Sønderby et al. 2016 for ladder VAEs).  Scaling every
latent sample site in both model and guide by ``beta`` weights exactly the KL part of any ELBO
estimator (closed-form KLs included):

    log p(x | z) + log p(z) - log q(z)   ->   log p(x | z) + beta * (log p(z) - log q(z))

:class:`KLAnnealing` is an ordinary Pyro ``Messenger``: wrap model and guide with it, run any
Pyro loop, and call :meth:`KLAnnealing.step` after each optimizer step, as one calls a
learning-rate scheduler's.  :class:`zoo.train.Trainer` uses the same object.

Usage::

    import pyro
    from pyro.infer import SVI, TraceMeanField_ELBO
    from zoo.handlers import KLAnnealing

    anneal = KLAnnealing.linear(end=1000)           # beta: 0 -> 1 over the first 1000 steps
    svi = SVI(anneal(model), anneal(guide), pyro.optim.Adam({"lr": 1e-3}), TraceMeanField_ELBO())
    for step in range(5000):
        svi.step(x, y)                              # -[log p(y | x, w) - beta * KL(q || p)]
        anneal.step()                               # beta of the next step

    KLAnnealing(0.1)                                # a fixed weight (a beta-VAE: Higgins 2017)

References: S. R. Bowman et al. (2016), Generating sentences from a continuous space, CoNLL;
C. K. Sønderby et al. (2016), Ladder variational autoencoders, NeurIPS; D. Molchanov,
A. Ashukha & D. Vetrov (2017), Variational dropout sparsifies deep neural networks, ICML.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pyro.poutine.messenger import Messenger

__all__ = ["KLAnnealing", "linear_warmup"]


def linear_warmup(start: float, end: float, final: float = 1.0) -> Callable[[float], float]:
    """The schedule ``beta(t)``: 0 before ``start``, rising linearly to ``final`` at ``end``,
    ``final`` from then on (``t`` in whatever unit the caller counts: steps, epochs).

    :raises ValueError: unless ``0 <= start <= end`` and ``final >= 0``, all finite.
    """
    if not (0 <= start <= end < math.inf) or not (0 <= final < math.inf):
        raise ValueError(
            f"a linear KL warm-up needs 0 <= start <= end and final >= 0, all finite; got "
            f"start={start}, end={end}, final={final}"
        )

    def beta(t: float) -> float:
        if t >= end:
            return final
        if t < start:
            return 0.0
        return final * (t - start) / (end - start)

    return beta


class KLAnnealing(Messenger):
    """Multiplies the log-density of every latent (unobserved, not enumerated) site by ``beta``.

    Applied to model and guide alike, it turns ``log p(x|z) + log p(z) - log q(z)`` into
    ``log p(x|z) + beta (log p(z) - log q(z))``, i.e. the KL weight, for any ELBO estimator.
    Enumerated sites are left alone: they are summed out exactly, not part of the KL.

    :param beta: the KL weight while no schedule is given (1 leaves the ELBO unchanged).
    :param schedule: ``step -> beta``; when given, ``beta`` is ``schedule(0)`` at first and
        :meth:`step` / :meth:`set_step` move along it.  :meth:`linear` builds the usual one.
    :raises ValueError: for a negative or non-finite ``beta``.

    :ivar beta: the current KL weight.
    :ivar steps: the steps counted so far (:meth:`step`, :meth:`set_step`).
    """

    def __init__(self, beta: float = 1.0, schedule: Callable[[float], float] | None = None) -> None:
        super().__init__()
        self.schedule = schedule
        self.steps = 0
        self.beta = _check_beta(beta if schedule is None else schedule(0))

    @classmethod
    def linear(cls, end: float, start: float = 0.0, final: float = 1.0) -> KLAnnealing:
        """A linear warm-up over steps: ``beta`` 0 before step ``start``, ``final`` from step
        ``end`` (:func:`linear_warmup`).

        :raises ValueError: unless ``0 <= start <= end`` and ``final >= 0``.
        """
        return cls(schedule=linear_warmup(start, end, final))

    def set_step(self, step: int) -> float:
        """Move to ``step`` of the schedule (a resumed run, say) and return its ``beta``.

        :raises ValueError: without a schedule, or for a schedule giving a negative or
            non-finite ``beta``.
        """
        if self.schedule is None:
            raise ValueError("this KLAnnealing has no schedule; set its beta directly")
        self.steps = step
        self.beta = _check_beta(self.schedule(step))
        return self.beta

    def step(self) -> float:
        """Count one optimizer step and return the ``beta`` of the next (call it after each
        step, like a learning-rate scheduler's ``step``).

        :raises ValueError: without a schedule.
        """
        return self.set_step(self.steps + 1)

    def _process_message(self, msg: dict) -> None:
        if (
            msg["type"] == "sample"
            and not msg["is_observed"]
            and not msg["infer"].get("enumerate")
            and not msg["infer"].get("_do_not_score")
        ):
            msg["scale"] = self.beta * msg["scale"]


def _check_beta(beta: float) -> float:
    if not 0 <= beta < math.inf:
        raise ValueError(f"the KL weight beta must be finite and >= 0, got {beta}")
    return beta
