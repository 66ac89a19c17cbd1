"""Mean-field Gaussian guides over global sites (Bayes by Backprop, Blundell et al. 2015).

:func:`relative_init_scale` is the rule the weight guides start their scales by: the same
noise-to-signal ratio ``alpha0`` in every layer.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

__all__ = ["DEFAULT_INIT_ALPHA", "MeanFieldNormal", "relative_init_scale"]

#: The default initial noise-to-signal ratio ``sigma0^2 / mean(mu^2)`` of a layer's weights:
#: weight noise of a tenth of each pre-activation's spread (see :func:`relative_init_scale`).
DEFAULT_INIT_ALPHA = 0.01


def relative_init_scale(init: torch.Tensor, alpha: float = DEFAULT_INIT_ALPHA) -> float:
    """A weight tensor's initial mean-field standard deviation, ``sqrt(alpha * mean(init^2))``.

    The rule gives every layer the same noise-to-signal ratio ``alpha`` at initialization.
    Under the local reparameterization a unit's pre-activation ``b = sum_i x_i w_i`` has mean
    ``sum_i x_i mu_i`` and variance ``sum_i x_i^2 sigma^2``; with the means ``mu`` at the
    network's own (zero-mean, independent) initialization, ``E_mu (sum_i x_i mu_i)^2 =
    sum_i x_i^2 mean(mu^2)``, so the noise's share of each pre-activation's variance is
    ``sigma^2 / mean(mu^2) = alpha`` for every input and every layer, whatever its fan-in.  (The
    ratio is the ``alpha`` of Gaussian dropout, Kingma, Salimans & Welling 2015, for a weight
    at the layer's typical size.)  PyTorch's default ``Linear``/``ConvNd`` initialization,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, has ``mean(mu^2) = 1/(3 fan_in)``, so there
    ``sigma0 = sqrt(alpha / (3 fan_in))``; that value also stands in for an all-zero ``init``.

    Why ``alpha = 0.01`` (weight noise 10% of each pre-activation's spread) by default: small
    enough that the initial network computes its deterministic initialization's function, so
    the first steps fit the data as a point estimate would; large enough that Adam can widen q
    within a training budget.  With the softplus scale, ``sigma ~ exp(rho)`` for small
    ``sigma``, so Adam's steps of about ``lr`` in ``rho`` change ``sigma`` by a factor of
    about ``exp(lr)`` each: 3000 steps at ``lr = 1e-3`` (the LeNet recipe, decayed over the
    second half) widen it only about tenfold.  A fixed ``sigma0 = 1e-3`` (the zoo's earlier
    default) ended at 0.0135 on digits whatever the objective asked, a near point estimate;
    a ``sigma0`` of order the initialization's own spread (``alpha = 1``) makes the
    pre-activations as noisy as they are informative.  ``alpha = 0.01`` is a convention, not
    the optimum of a score: in a short budget the ELBO keeps improving with wider starts (its
    KL term) while the fit degrades, and LOO on the training data prefers the narrowest.  For
    digits' first layer (fan-in 64) the rule gives ``sigma0 = 0.0072``, ``rho = -4.9``, at the
    narrow end of the ``rho`` in ``[-5, -3]`` used for Bayes by Backprop (Blundell et al.
    2015); how much SVI depends on the variational parameters' start is shown by Rossi,
    Michiardi & Filippone (2019), "Good initializations of variational Bayes for deep models",
    ICML.  Measured on digits: docs/bnn.md, "The mean-field guide's initial scale".

    Usage::

        w = torch.nn.Linear(64, 300).weight          # U(-1/8, 1/8)
        relative_init_scale(w)                       # ~ sqrt(0.01 / 192) = 0.0072

    :param init: the weight tensor's initial values (output units first).
    :param alpha: the noise-to-signal ratio, positive.
    :raises ValueError: for ``alpha <= 0`` or an ``init`` with fewer than 2 dimensions.
    """
    if not alpha > 0:
        raise ValueError(f"init alpha must be positive, got {alpha}")
    if init.dim() < 2:
        raise ValueError(f"init must be a weight tensor (out, in, ...), got {tuple(init.shape)}")
    mean_square = init.detach().double().square().mean().item()
    if mean_square == 0.0:
        mean_square = 1.0 / (3 * math.prod(init.shape[1:]))
    return math.sqrt(alpha * mean_square)


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
