"""Mean-field Gaussian guides over global sites (Bayes by Backprop, Blundell et al. 2015)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam


class MeanFieldNormal(PyroModule):
    """``q(w) = prod_i N(w_i; loc_i, scale_i^2)`` over one sample site of shape ``shape``.

    The scale is kept positive through a softplus, which has gentler gradients than ``exp`` when
    the scale is large (Blundell et al., 2015, sec. 3.2).

    Usage::

        q_w = MeanFieldNormal("W", (64, 10), init_scale=1e-2)
        w = q_w()        # inside a guide: samples the site "W"

    :param site: the model's sample-site name.
    :param shape: the site's event shape.
    :param init_loc: initial means; a small random draw (std ``init_loc_std``) when omitted, so
        that the columns of a weight matrix start out distinct.
    :param init_scale: initial standard deviation of every entry.
    """

    def __init__(
        self,
        site: str,
        shape: tuple[int, ...],
        *,
        init_loc: torch.Tensor | None = None,
        init_loc_std: float = 0.1,
        init_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        if init_scale <= 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        self.site = site
        self.shape = tuple(shape)
        loc = torch.randn(self.shape) * init_loc_std if init_loc is None else init_loc.clone()
        if tuple(loc.shape) != self.shape:
            raise ValueError(f"init_loc has shape {tuple(loc.shape)}, expected {self.shape}")
        self.loc = PyroParam(loc)
        self.scale = PyroParam(
            torch.full(self.shape, float(init_scale)), constraint=constraints.softplus_positive
        )

    def distribution(self) -> dist.TorchDistribution:
        """``q(w)`` itself, e.g. to read its mean or to compute a KL."""
        return dist.Normal(self.loc, self.scale).to_event(len(self.shape))

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return pyro.sample(self.site, self.distribution())
