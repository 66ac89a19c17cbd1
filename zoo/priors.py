"""Weight priors that turn any ``nn.Module`` into a Bayesian one, and their registered KLs.

A :class:`Prior` rewrites the ``Linear`` and ``Conv2d`` layers of an existing network in place
(:meth:`Prior.apply_`): each weight becomes a ``PyroSample`` site named after the layer's path
(``"net.0.weight"``) and biases stay ordinary, point-estimated parameters, as in Molchanov et al.
(2017).  The architecture's own ``forward`` is untouched; the layers' class is swapped for a
subclass whose forward asks :mod:`zoo.handlers.lrt` whether to use the local reparameterization.

Two priors:

* :class:`Normal` -- ``w ~ N(0, s^2)`` independently, the prior of Bayes by Backprop
  (Blundell et al. 2015) and of MC dropout (Gal & Ghahramani 2016).
* :class:`LogUniform` -- the improper, scale-invariant ``p(|w|) ∝ 1/|w|`` of variational dropout
  (Kingma, Salimans & Welling 2015; Molchanov, Ashukha & Vetrov 2017).  Its KL from a Gaussian
  ``q(w) = N(theta, sigma^2)`` depends on ``alpha = sigma^2 / theta^2`` only, and is registered
  with :func:`torch.distributions.kl.register_kl` so that ``TraceMeanField_ELBO`` uses it.

Usage::

    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    LogUniform().apply_(net)            # net is now a PyroModule with two weight sites
    [s.name for s in weight_sites(net)] # ['1.weight', '3.weight']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.nn import PyroModule, PyroSample
from pyro.nn.module import to_pyro_module_
from torch import nn
from torch.distributions import constraints
from torch.distributions.kl import register_kl

from zoo.handlers import lrt

__all__ = [
    "KL_K1",
    "KL_K2",
    "KL_K3",
    "LOG_ALPHA_EPS",
    "BayesianConv2d",
    "BayesianLinear",
    "ImproperLogUniform",
    "LogUniform",
    "Normal",
    "Prior",
    "WeightSite",
    "log_alpha",
    "sparse_vd_kl",
    "weight_sites",
]

#: Molchanov et al. (2017), eq. 14: -KL ≈ k1 σ(k2 + k3 log α) - ½ log1p(1/α) - k1.
KL_K1, KL_K2, KL_K3 = 0.63576, 1.87320, 1.48695
#: Added to theta² before its log, as in the authors' code: keeps log α finite when theta = 0.
LOG_ALPHA_EPS = 1e-8


def sparse_vd_kl(log_alpha: torch.Tensor) -> torch.Tensor:
    """KL(N(theta, alpha theta²) || LogUniform) per weight, Molchanov et al. (2017), eq. 14.

    The approximation holds for every alpha (Kingma's holds for alpha ≤ 1 only) and its constant
    makes the KL vanish as alpha -> ∞, where the weight is pruned.
    """
    return (
        KL_K1
        - KL_K1 * torch.sigmoid(KL_K2 + KL_K3 * log_alpha)
        + 0.5 * torch.nn.functional.softplus(-log_alpha)
    )


def log_alpha(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``log sigma² - log theta²``, finite for ``theta -> 0`` and ``sigma -> 0``.

    ``scale`` is clamped at the smallest normal float before its log, so an underflowed sigma
    gives a large negative (not ``-inf``) value and a zero, not NaN, gradient.
    """
    tiny = torch.finfo(scale.dtype).tiny
    return 2.0 * scale.clamp_min(tiny).log() - (loc.square() + LOG_ALPHA_EPS).log()


class ImproperLogUniform(TorchDistribution):
    """The improper log-uniform density ``log p(w) = -log|w|`` over the reals.

    ``log_prob`` caps ``|w|`` below at the dtype's smallest normal number (about 88 nats in
    float32), so that a weight sampled as exactly zero gives a finite value.

    It has no normalizer and cannot be sampled: it is meant as the prior of a weight whose guide
    is Gaussian, where only ``KL(q || p)`` is needed (registered below).  ``log_alpha_clip`` is the
    interval the KL clips ``log alpha`` to ([-8, 8] in the authors' Theano code).

    :param batch_shape: the shape of the weight tensor.
    :param log_alpha_clip: ``(low, high)`` for ``log alpha`` inside the KL.
    """

    arg_constraints: dict = {}  # noqa: RUF012 (torch's own class attribute)
    support = constraints.real
    has_rsample = False

    def __init__(
        self,
        batch_shape: torch.Size | tuple[int, ...] = (),
        *,
        log_alpha_clip: tuple[float, float] = (-8.0, 8.0),
        validate_args: bool | None = None,
    ) -> None:
        low, high = log_alpha_clip
        if not low < high:
            raise ValueError(
                f"log_alpha_clip must be (low, high) with low < high, got {log_alpha_clip}"
            )
        self.log_alpha_clip = (float(low), float(high))
        super().__init__(torch.Size(batch_shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ImproperLogUniform, _instance)
        new.log_alpha_clip = self.log_alpha_clip
        super(ImproperLogUniform, new).__init__(torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        # Capped at the smallest normal float: a weight drawn as exactly 0 (it happens in float32)
        # would otherwise give +inf, which Pyro reports although TraceMeanField never uses it.
        return -value.abs().clamp_min(torch.finfo(value.dtype).tiny).log()

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        raise NotImplementedError(
            "the log-uniform prior is improper and cannot be sampled; pair it with a Gaussian "
            "guide (guides.dropout.SparseVD or VariationalDropout) and use the guide's samples"
        )


@register_kl(dist.Normal, ImproperLogUniform)
def _kl_normal_loguniform(q: dist.Normal, p: ImproperLogUniform) -> torch.Tensor:
    la = log_alpha(q.loc, q.scale).clamp(*p.log_alpha_clip)
    kl = sparse_vd_kl(la)
    return kl.expand(torch.broadcast_shapes(kl.shape, p.batch_shape))


# --------------------------------------------------------------------------------------------
# Bayesian layers


class _BayesianLayer:
    """Mixin for the swapped layer classes; the weight is a ``PyroSample`` set by a prior."""

    _zoo_prior: Prior
    _zoo_weight_init: torch.Tensor


class BayesianLinear(PyroModule[nn.Linear], _BayesianLayer):
    """``nn.Linear`` whose weight is a sample site; see :func:`zoo.handlers.lrt.linear`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return lrt.linear(input, self.weight, self.bias)


class BayesianConv2d(PyroModule[nn.Conv2d], _BayesianLayer):
    """``nn.Conv2d`` whose weight is a sample site; see :func:`zoo.handlers.lrt.conv2d`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError("Bayesian Conv2d supports padding_mode='zeros' only")
        return lrt.conv2d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


_SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: BayesianLinear,
    nn.Conv2d: BayesianConv2d,
}


@dataclass(frozen=True)
class WeightSite:
    """One Bayesian weight of a network: its site name, shape, initial value and layer."""

    name: str
    shape: torch.Size
    init: torch.Tensor
    module: nn.Module

    @property
    def kind(self) -> str:
        return "conv2d" if isinstance(self.module, nn.Conv2d) else "linear"


def _weight_prior(module: nn.Module) -> dist.Distribution:
    anchor = module._zoo_anchor
    shape = module._zoo_weight_init.shape
    return module._zoo_prior.distribution(shape, anchor).to_event(len(shape))


class Prior:
    """A prior over the weights of ``Linear`` and ``Conv2d`` layers; subclasses give its form."""

    def distribution(self, shape: torch.Size, anchor: torch.Tensor) -> dist.Distribution:
        """The prior of one weight tensor, batch shape ``shape`` (``anchor`` fixes device/dtype)."""
        raise NotImplementedError

    def apply_(
        self, net: nn.Module, *, include: Callable[[str, nn.Module], bool] | None = None
    ) -> nn.Module:
        """Make the weights of ``net``'s ``Linear``/``Conv2d`` layers sample sites, in place.

        :param net: any module; it becomes a ``PyroModule`` (its ``forward`` is unchanged).
        :param include: ``(qualified_name, layer) -> bool`` picks layers (all by default).
        :returns: ``net``.
        :raises ValueError: if no layer qualifies or ``net`` already has Bayesian layers.
        """
        targets = []
        for name, m in net.named_modules():
            if isinstance(m, _BayesianLayer):
                raise ValueError(f"layer {name!r} is already Bayesian; apply a prior once")
            if type(m) in _SWAPS and (include is None or include(name, m)):
                targets.append((m, type(m)))
        if not targets:
            raise ValueError(f"{type(net).__name__} has no Linear or Conv2d layer to make Bayesian")
        to_pyro_module_(net)
        for m, cls in targets:
            init = m.weight.detach().clone()
            m.__class__ = _SWAPS[cls]
            del m.weight
            # The anchor moves with .to() and gives the prior its device and dtype; it is not
            # state, so it stays out of state_dict.
            m.register_buffer(
                "_zoo_anchor",
                torch.zeros((), dtype=init.dtype, device=init.device),
                persistent=False,
            )
            m._zoo_prior = self
            m._zoo_weight_init = init
            m.weight = PyroSample(_weight_prior)
        return net


@dataclass(frozen=True)
class Normal(Prior):
    """``w ~ N(0, scale²)`` for every weight (Blundell et al. 2015)."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"prior scale must be positive and finite, got {self.scale}")

    def distribution(self, shape: torch.Size, anchor: torch.Tensor) -> dist.Distribution:
        return dist.Normal(anchor, anchor + self.scale).expand(shape)


@dataclass(frozen=True)
class LogUniform(Prior):
    """The improper log-uniform prior ``p(|w|) ∝ 1/|w|`` (Molchanov et al. 2017).

    :param log_alpha_clip: ``(low, high)`` for ``log alpha`` in the KL.
    """

    log_alpha_clip: tuple[float, float] = (-8.0, 8.0)

    def distribution(self, shape: torch.Size, anchor: torch.Tensor) -> dist.Distribution:
        return ImproperLogUniform(shape, log_alpha_clip=self.log_alpha_clip)


def weight_sites(net: nn.Module) -> list[WeightSite]:
    """The Bayesian weights of ``net`` (after :meth:`Prior.apply_`), in module order.

    Site names are the ones the model's ``pyro.sample`` calls use, so read them from the final
    model (a network placed inside a ``PyroModule`` gets its attribute name as prefix).
    """
    sites = []
    for m in net.modules():
        if isinstance(m, _BayesianLayer):
            sites.append(
                WeightSite(
                    f"{m._pyro_name}.weight" if m._pyro_name else "weight",
                    m._zoo_weight_init.shape,
                    m._zoo_weight_init,
                    m,
                )
            )
    return sites
