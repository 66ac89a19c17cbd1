"""SBP's guide: a truncated log-normal per neuron or channel (Neklyudov et al. 2017).

Built from a model whose layers carry :class:`zoo.structured.SBP` noise, it emits one site per
layer, ``q(theta_i) = LogNormal(mu_i, sigma_i^2)`` truncated to the prior's interval, with
``mu`` clamped to ``[a, b]`` and ``log sigma`` to ``[-20, 5]``, as in the authors' code.  The
weights are the model's own point estimates.  ``mu`` starts at ``b`` = 0 and ``log sigma`` at
-5, so each unit starts close to ``theta = 1``: the net it is given (pretrained, as the paper
fine-tunes, or fresh) is where training starts.

:meth:`SBPGuide.log_alpha` is ``log(Var/E^2) = -2 log SNR`` per unit, and :meth:`masks` keeps
a unit when it is at most the threshold: :data:`zoo.structured.SBP_THRESHOLD` = 0 is the
paper's rule, SNR >= 1.  :meth:`mean_weights` gives the pruned means ``E[theta] * mask``, the
values the mean net multiplies its units by.

Usage::

    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    model = BNN(lambda: net, SBP(), info)
    guide = SBPGuide(model)
    guide.log_alpha()["net.1.unit_noise"].shape       # torch.Size([300])
"""

from __future__ import annotations

import torch
from pyro.nn import PyroModule
from torch import nn

from guides.dropout import WeightGuide
from zoo.structured import SBP_THRESHOLD, TruncatedLogNormal, UnitSite, unit_sites

__all__ = ["LOG_SIGMA_RANGE", "SBPGuide"]

#: The interval ``log sigma`` is clamped to (the authors' code).
LOG_SIGMA_RANGE = (-20.0, 5.0)


class _UnitNoise(PyroModule):
    def __init__(
        self, site: UnitSite, init_loc: float | None, init_log_sigma: float, lr_scale: float
    ) -> None:
        super().__init__()
        prior = site.module._zoo_prior
        self.site, self.low, self.high = site.name, prior.low, prior.high
        self.lr_scale = float(lr_scale)
        loc = prior.high if init_loc is None else init_loc
        # stored divided by lr_scale: Adam moves a parameter by about lr per step whatever its
        # gradient's scale, so these move lr_scale times faster than the weights
        self.raw_loc = nn.Parameter(torch.full((site.units,), float(loc) / self.lr_scale))
        self.raw_log_sigma = nn.Parameter(
            torch.full((site.units,), float(init_log_sigma) / self.lr_scale)
        )

    @property
    def loc(self) -> torch.Tensor:
        """``mu`` per unit (before the clamp to ``[a, b]``)."""
        return self.raw_loc * self.lr_scale

    @property
    def log_sigma(self) -> torch.Tensor:
        """``log sigma`` per unit (before the clamp to :data:`LOG_SIGMA_RANGE`)."""
        return self.raw_log_sigma * self.lr_scale

    def set_(self, loc: torch.Tensor | float, log_sigma: torch.Tensor | float) -> None:
        """Set ``mu`` and ``log sigma`` (in place, without gradient)."""
        with torch.no_grad():
            self.raw_loc.copy_(torch.as_tensor(loc) / self.lr_scale)
            self.raw_log_sigma.copy_(torch.as_tensor(log_sigma) / self.lr_scale)

    def distribution(self) -> TruncatedLogNormal:
        loc = self.loc.clamp(self.low, self.high)
        scale = self.log_sigma.clamp(*LOG_SIGMA_RANGE).exp()
        return TruncatedLogNormal(loc, scale, self.low, self.high).to_event(1)


class SBPGuide(WeightGuide):
    """Structured Bayesian Pruning's posterior over the unit noise of an :class:`SBP` net.

    Neklyudov, Molchanov, Ashukha & Vetrov, "Structured Bayesian Pruning via Log-Normal
    Multiplicative Noise", NeurIPS 2017.

    :param model: a module whose layers carry SBP noise.
    :param init_loc: initial ``mu`` (the prior's ``b`` when omitted).
    :param init_log_sigma: initial ``log sigma``.
    :param lr_scale: how many times faster than the weights ``mu`` and ``log sigma`` move under
        Adam (a learning rate of their own, ``lr_scale * lr``, without a second optimizer):
        from ``log sigma = -5`` a unit needs a change of about 5 to be pruned, which at
        ``lr = 1e-3`` would take 5000 steps.
    :raises ValueError: when ``model`` has no SBP noise.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        init_loc: float | None = None,
        init_log_sigma: float = -5.0,
        lr_scale: float = 1.0,
    ) -> None:
        if not lr_scale > 0:
            raise ValueError(f"lr_scale must be positive, got {lr_scale}")
        sites = unit_sites(model)
        if not sites:
            raise ValueError(
                f"{type(model).__name__} has no SBP noise: apply zoo.structured.SBP() first"
            )
        # WeightGuide's own __init__ collects weight sites; this guide's sites are the noise.
        PyroModule.__init__(self)
        self.sites = PyroModule[nn.ModuleList](
            [_UnitNoise(s, init_loc, init_log_sigma, lr_scale) for s in sites]
        )
        # every site is marked a "weight": the LRT handler skips its draw, and the layers draw
        # their noise per example themselves (none is drawn once per minibatch)
        self.shared_draws = frozenset()

    def log_alpha(self) -> dict[str, torch.Tensor]:
        """``log(Var[theta] / E[theta]^2) = -2 log SNR`` per unit and site."""
        return {s.site: s.distribution().base_dist.log_alpha() for s in self.sites}

    def masks(self, threshold: float = SBP_THRESHOLD) -> dict[str, torch.Tensor]:
        """``True`` for the units kept, ``log alpha <= threshold`` (0: SNR >= 1)."""
        return super().masks(threshold)
