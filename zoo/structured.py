"""Structured Bayesian Pruning: log-normal noise per neuron or channel, and its registered KL.

Neklyudov, Molchanov, Ashukha & Vetrov, "Structured Bayesian Pruning via Log-Normal
Multiplicative Noise", NeurIPS 2017.  Every chosen ``Linear`` or ``Conv1d/2d/3d`` layer keeps
its weights and bias as point estimates and multiplies each of its output units (a neuron, or a
channel at every position) by a positive noise ``theta_i``::

    out[:, i] = (W x + b)[:, i] * theta_i,
    p(theta_i)  = LogUniform truncated to [exp(a), exp(b)]        (a = -20, b = 0)
    q(theta_i)  = LogNormal(mu_i, sigma_i^2) truncated to the same interval

With ``x = log theta`` the prior is ``Uniform(a, b)`` and ``q`` a normal truncated to ``[a, b]``;
the KL is invariant under ``exp``, so, with ``alpha = (a - mu)/sigma``,
``beta = (b - mu)/sigma``, ``Z = Phi(beta) - Phi(alpha)`` and ``phi`` the standard normal
density, it is ``log(b - a)`` minus the truncated normal's entropy::

    KL(q || p) = log(b - a) - log(sqrt(2 pi e) sigma) - log Z
                 - (alpha phi(alpha) - beta phi(beta)) / (2 Z)

(registered for :class:`TruncatedLogNormal` and :class:`TruncatedLogUniform`; ``tests/zoo/
test_structured.py`` checks it against numerical integration).  ``theta``'s moments are those
of a truncated normal's exponential, ``E[theta] = exp(mu + sigma^2/2) (Phi(beta - sigma) -
Phi(alpha - sigma)) / Z`` and ``E[theta^2] = exp(2 mu + 2 sigma^2) (Phi(beta - 2 sigma) -
Phi(alpha - 2 sigma)) / Z``.  A unit whose signal-to-noise ratio ``E[theta] / std[theta]`` is
below 1 is pruned: :meth:`TruncatedLogNormal.log_alpha`, ``log(Var/E^2) = -2 log SNR``, above 0.

The noise is drawn per example and unit, like dropout's masks: under
:class:`zoo.handlers.lrt.LocalReparameterization` the layer finds ``q`` of its noise site and
calls :meth:`TruncatedLogNormal.dropout_input`; without the handler it uses the one draw the
guide made for the whole minibatch.  :class:`guides.structured.SBPGuide` is the guide.

Usage::

    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10))
    SBP().apply_(net)                      # noise on the 300 hidden units (not on the outputs)
    [s.name for s in unit_sites(net)]      # ['1.unit_noise']
"""

from __future__ import annotations

import functools
import math
import warnings
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
from zoo.priors import LayerSelector, Prior, deterministic_layers, layer_type, select_layers
from zoo.util import CopiesAsItself

__all__ = [
    "SBP",
    "SBP_THRESHOLD",
    "StructuredConv1d",
    "StructuredConv2d",
    "StructuredConv3d",
    "StructuredLinear",
    "TruncatedLogNormal",
    "TruncatedLogUniform",
    "UnitSite",
    "log_diff_ndtr",
    "sbp_kl",
    "unit_sites",
]

#: The ``log alpha = log(Var/E^2)`` threshold of SBP's rule, SNR < 1: prune above it.
SBP_THRESHOLD = 0.0
_LOG_SQRT_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    # log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012).
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def log_diff_ndtr(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """``log(Phi(hi) - Phi(lo))`` for ``hi > lo``, accurate in both tails.

    Both arguments in the upper tail are reflected (``Phi(hi) - Phi(lo) = Phi(-lo) -
    Phi(-hi)``), so the difference is always taken between two lower-tail ``log_ndtr`` values.
    """
    flip = lo > 0
    h, low = torch.where(flip, -lo, hi), torch.where(flip, -hi, lo)
    log_h, log_l = torch.special.log_ndtr(h), torch.special.log_ndtr(low)
    return log_h + _log1mexp((log_l - log_h).clamp(max=-1e-300))


class TruncatedLogUniform(TorchDistribution):
    """``log theta ~ Uniform(low, high)``: density ``1 / ((high - low) theta)`` on
    ``[exp(low), exp(high)]``, SBP's prior (proper, unlike :class:`zoo.priors.LogUniform`).

    :param low: ``a``, the log of the smallest value.
    :param high: ``b``, the log of the largest value.
    :param batch_shape: the shape of the noise tensor.
    """

    arg_constraints: dict = {}  # noqa: RUF012 (torch's own class attribute)
    has_rsample = True

    def __init__(
        self,
        low: float,
        high: float,
        batch_shape: torch.Size | tuple[int, ...] = (),
        *,
        anchor: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not low < high:
            raise ValueError(f"need low < high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)
        self.anchor = torch.zeros(()) if anchor is None else anchor
        super().__init__(torch.Size(batch_shape), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.interval(math.exp(self.low), math.exp(self.high))

    def expand(self, batch_shape, _instance=None):
        return TruncatedLogUniform(
            self.low, self.high, batch_shape, anchor=self.anchor, validate_args=False
        )

    @property
    def mean(self) -> torch.Tensor:
        value = (math.exp(self.high) - math.exp(self.low)) / (self.high - self.low)
        return self.anchor.new_full(self.batch_shape, value)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        u = torch.rand(self._extended_shape(sample_shape), dtype=self.anchor.dtype)
        return (self.low + (self.high - self.low) * u.to(self.anchor.device)).exp()

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return -math.log(self.high - self.low) - value.log()


class TruncatedLogNormal(TorchDistribution):
    """``log theta ~ N(loc, scale^2)`` truncated to ``[low, high]``: SBP's posterior.

    Sampled by the inverse CDF of the truncated normal (reparameterized), in float64.
    ``loc`` should lie in ``[low, high]`` (:class:`guides.structured.SBPGuide` clamps it), so
    that ``Z = Phi(beta) - Phi(alpha) >= Phi((high - low) / (2 scale)) - 1/2`` never underflows.

    :param loc: ``mu``, the mean of ``log theta`` before truncation.
    :param scale: ``sigma``, its standard deviation before truncation.
    :param low: ``a``.
    :param high: ``b``.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}  # noqa: RUF012
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        low: float,
        high: float,
        validate_args: bool | None = None,
    ) -> None:
        if not low < high:
            raise ValueError(f"need low < high, got low={low}, high={high}")
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        self.low, self.high = float(low), float(high)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.interval(math.exp(self.low), math.exp(self.high))

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return TruncatedLogNormal(
            self.loc.expand(batch_shape),
            self.scale.expand(batch_shape),
            self.low,
            self.high,
            self._validate_args,
        )

    def _standard(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # mu, sigma, alpha, beta in float64
        mu, sigma = self.loc.double(), self.scale.double()
        return mu, sigma, (self.low - mu) / sigma, (self.high - mu) / sigma

    def log_moment(self, k: int) -> torch.Tensor:
        """``log E[theta^k]`` (float64): ``k mu + k^2 sigma^2 / 2 + log((Phi(beta - k sigma) -
        Phi(alpha - k sigma)) / Z)``."""
        mu, sigma, alpha, beta = self._standard()
        shifted = log_diff_ndtr(beta - k * sigma, alpha - k * sigma)
        return k * mu + 0.5 * k * k * sigma.square() + shifted - log_diff_ndtr(beta, alpha)

    @property
    def mean(self) -> torch.Tensor:
        return self.log_moment(1).exp().to(self.loc.dtype)

    @property
    def variance(self) -> torch.Tensor:
        log_m1, log_m2 = self.log_moment(1), self.log_moment(2)
        return (2 * log_m1 + self.log_alpha_double(log_m1, log_m2)).exp().to(self.loc.dtype)

    @staticmethod
    def log_alpha_double(log_m1: torch.Tensor, log_m2: torch.Tensor) -> torch.Tensor:
        """``log(Var / E^2) = log(E[theta^2] / E[theta]^2 - 1)`` from the two log-moments."""
        excess = (log_m2 - 2 * log_m1).clamp_min(1e-300)  # >= 0 by Jensen; rounding aside
        return torch.log(torch.expm1(excess))

    def log_alpha(self) -> torch.Tensor:
        """``log(Var[theta] / E[theta]^2) = -2 log SNR``; SBP prunes a unit when it is > 0."""
        log_alpha = self.log_alpha_double(self.log_moment(1), self.log_moment(2))
        return log_alpha.to(self.loc.dtype)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        mu, sigma, alpha, beta = self._standard()
        u = torch.rand(self._extended_shape(sample_shape), dtype=torch.float64)
        lo, hi = torch.special.ndtr(alpha), torch.special.ndtr(beta)
        p = (lo + u.to(mu.device) * (hi - lo)).clamp(1e-300, 1 - 1e-16)
        z = torch.maximum(torch.minimum(torch.special.ndtri(p), beta), alpha)
        return (mu + sigma * z).exp().to(self.loc.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        mu, sigma, alpha, beta = self._standard()
        x = value.double().log()
        z = (x - mu) / sigma
        log_q = -0.5 * z.square() - 0.5 * math.log(2 * math.pi) - sigma.log()
        return (log_q - log_diff_ndtr(beta, alpha) - x).to(value.dtype)

    def dropout_input(self, x: torch.Tensor, feature_dim: int) -> torch.Tensor:
        """``x`` times a fresh noise draw per example and unit, the units along ``feature_dim``
        (-1 for a ``Linear`` layer's outputs, 1 for a convolution's channels)."""
        shape = [1] * x.dim()
        shape[0], shape[feature_dim] = x.shape[0], x.shape[feature_dim]
        return x * self.rsample((x.shape[0],)).reshape(shape)


def sbp_kl(q: TruncatedLogNormal) -> torch.Tensor:
    """``KL(q || TruncatedLogUniform(q.low, q.high))`` per unit, in closed form (module doc)."""
    _, sigma, alpha, beta = q._standard()
    log_z = log_diff_ndtr(beta, alpha)
    log_phi = -0.5 * math.log(2 * math.pi)

    def weighted_density(t: torch.Tensor) -> torch.Tensor:
        # t phi(t) / Z, finite for any t (phi underflows before t grows)
        return t * (log_phi - 0.5 * t.square() - log_z).exp()

    kl = (
        math.log(q.high - q.low)
        - _LOG_SQRT_2PI_E
        - sigma.log()
        - log_z
        - 0.5 * (weighted_density(alpha) - weighted_density(beta))
    )
    return kl.to(q.loc.dtype)


@register_kl(TruncatedLogNormal, TruncatedLogUniform)
def _kl_truncated_lognormal_loguniform(
    q: TruncatedLogNormal, p: TruncatedLogUniform
) -> torch.Tensor:
    if (q.low, q.high) != (p.low, p.high):
        raise ValueError(
            f"q is truncated to [{q.low}, {q.high}] but the prior to [{p.low}, {p.high}] (log "
            "scale): the KL is infinite unless both use the same interval"
        )
    kl = sbp_kl(q)
    return kl.expand(torch.broadcast_shapes(kl.shape, p.batch_shape))


# --------------------------------------------------------------------------------------------
# Layers with noise on their output units


class _StructuredLayer(CopiesAsItself):
    """Mixin for the swapped layer classes: ``unit_noise`` (on the ``_zoo_units`` outputs) and
    ``input_noise`` (on the ``_zoo_inputs`` input features) are ``PyroSample`` set by SBP; a
    count of 0 means no such noise.  It comes first among their bases, so that a deep copy
    keeps the class (:class:`~zoo.util.CopiesAsItself`)."""

    _zoo_prior: SBP
    _zoo_units: int = 0
    _zoo_inputs: int = 0


def _noise(layer: nn.Module, out: torch.Tensor, feature_dim: int, site: str = "unit_noise"):
    noise = getattr(layer, site)
    handler = lrt.active()
    q = None if handler is None else handler.posterior(noise)
    if q is not None and hasattr(q, "dropout_input"):
        return q.dropout_input(out, feature_dim)  # a fresh draw per example and unit
    shape = [1] * out.dim()
    shape[feature_dim] = -1
    return out * noise.reshape(shape)


class StructuredLinear(_StructuredLayer, PyroModule[nn.Linear]):
    """``nn.Linear`` whose output neurons are multiplied by ``unit_noise``, and (the first
    ``Linear`` layer, with ``SBP(inputs=True)``) its input features by ``input_noise`` (SBP)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self._zoo_inputs:
            input = _noise(self, input, -1, "input_noise")
        out = nn.Linear.forward(self, input)
        return _noise(self, out, -1) if self._zoo_units else out


class StructuredConv1d(_StructuredLayer, PyroModule[nn.Conv1d]):
    """``nn.Conv1d`` whose output channels are multiplied by ``unit_noise`` (SBP)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _noise(self, nn.Conv1d.forward(self, input), 1)


class StructuredConv2d(_StructuredLayer, PyroModule[nn.Conv2d]):
    """``nn.Conv2d`` whose output channels are multiplied by ``unit_noise`` (SBP)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _noise(self, nn.Conv2d.forward(self, input), 1)


class StructuredConv3d(_StructuredLayer, PyroModule[nn.Conv3d]):
    """``nn.Conv3d`` whose output channels are multiplied by ``unit_noise`` (SBP)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _noise(self, nn.Conv3d.forward(self, input), 1)


_STRUCTURED = {
    "Linear": StructuredLinear,
    "Conv1d": StructuredConv1d,
    "Conv2d": StructuredConv2d,
    "Conv3d": StructuredConv3d,
}


def _noise_prior(module: nn.Module, units: int | None = None) -> dist.Distribution:
    prior = module._zoo_prior
    units = module._zoo_units if units is None else units
    return TruncatedLogUniform(prior.low, prior.high, (units,), anchor=module._zoo_anchor).to_event(
        1
    )


def _input_prior(module: nn.Module) -> dist.Distribution:
    return _noise_prior(module, module._zoo_inputs)


@dataclass(frozen=True)
class UnitSite:
    """One noise site: its name, number of units, layer, and whether it is on the layer's
    outputs (``"out"``, ``unit_noise``) or on its input features (``"in"``, ``input_noise``)."""

    name: str
    units: int
    module: nn.Module
    where: str = "out"

    @property
    def kind(self) -> str:
        """``"linear"``, ``"conv1d"``, ``"conv2d"`` or ``"conv3d"``."""
        return layer_type(self.module).lower()


def unit_sites(net: nn.Module) -> list[UnitSite]:
    """The noise sites of ``net`` (after :meth:`SBP.apply_`), in module order, a layer's
    ``input_noise`` before its ``unit_noise``."""
    sites = []
    for m in net.modules():
        if isinstance(m, _StructuredLayer):
            prefix = f"{m._pyro_name}." if m._pyro_name else ""
            if m._zoo_inputs:
                sites.append(UnitSite(f"{prefix}input_noise", m._zoo_inputs, m, "in"))
            if m._zoo_units:
                sites.append(UnitSite(f"{prefix}unit_noise", m._zoo_units, m, "out"))
    return sites


@dataclass(frozen=True)
class SBP(Prior):
    """Structured Bayesian Pruning's prior: truncated log-uniform noise per output unit.

    Neklyudov et al. (2017).  :meth:`apply_` leaves the weights as point estimates and gives
    every chosen layer a ``unit_noise`` site, one value per output neuron or channel.

    :param low: ``a``, the log of the smallest noise value (-20 in the paper).
    :param high: ``b``, the log of the largest (0 in the paper).
    :param inputs: also put noise on the input features of the net's first ``Linear`` layer
        (the pixels of an MLP, the flattened conv features of LeNet-5), as the paper does:
        its LeNet-500-300 keeps 245 of 784 pixels.
    """

    low: float = -20.0
    high: float = 0.0
    inputs: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"need finite low < high, got low={self.low}, high={self.high}")

    def distribution(self, shape: torch.Size, anchor: torch.Tensor) -> dist.Distribution:
        return TruncatedLogUniform(self.low, self.high, shape, anchor=anchor)

    def apply_(self, net: nn.Module, *, layers: LayerSelector = None) -> nn.Module:
        """Put noise on the output units of ``net``'s ``Linear``/``ConvNd`` layers, in place.

        :param layers: which layers (:func:`zoo.priors.select_layers`); by default all but the
            last in module order, whose outputs are the net's (classes are never pruned).
        :returns: ``net``, now a ``PyroModule``.
        :raises ValueError: when no layer is left to prune, or a layer already has noise.
        """
        for name, m in net.named_modules():
            if isinstance(m, _StructuredLayer):
                raise ValueError(f"layer {name!r} already has SBP noise; apply a prior once")
        chosen = select_layers(net, layers)
        if layers is None:
            chosen = chosen[:-1]
            if not chosen:
                raise ValueError(
                    f"{layer_type(net)} has a single Linear/ConvNd layer, whose outputs are the "
                    "net's: SBP has no hidden unit to prune (pass layers= to choose it anyway)"
                )
        has_linear = any(type(m) is nn.Linear for m in net.modules())
        linears = select_layers(net, nn.Linear) if self.inputs and has_linear else []
        first = linears[0][1] if linears else None
        targets = {id(m): (m, True) for _, m in chosen}
        if first is not None and id(first) not in targets:
            targets[id(first)] = (first, False)
        to_pyro_module_(net)
        for m, outputs in targets.values():
            m.__class__ = _STRUCTURED[layer_type(m)]
            m.register_buffer(
                "_zoo_anchor",
                torch.zeros((), dtype=m.weight.dtype, device=m.weight.device),
                persistent=False,
            )
            m._zoo_prior = self
            if outputs:
                m._zoo_units = int(m.weight.shape[0])
                m.unit_noise = PyroSample(functools.partial(_noise_prior))  # as in zoo.priors
            if m is first:
                m._zoo_inputs = int(m.weight.shape[1])
                m.input_noise = PyroSample(functools.partial(_input_prior))
        others = [
            f"{n} ({layer_type(m)})"
            for n, m in deterministic_layers(net)
            if not isinstance(m, _StructuredLayer | nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)
        ]
        if others:
            warnings.warn(
                f"SBP.apply_ puts no noise on {len(others)} parametrized layer(s) of "
                f"{layer_type(net)}: {', '.join(others)}; their units are never pruned",
                UserWarning,
                stacklevel=2,
            )
        return net
