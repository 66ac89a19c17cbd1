"""Guides over the weights of a Bayesian network: the dropout family and Bayes by Backprop.

Every guide here is built from a model whose layers were made Bayesian by a
:class:`zoo.priors.Prior`; it emits one sample site per weight tensor, with the model's names.

* :class:`SparseVD` -- per-weight ``q(w) = N(theta, sigma^2)`` in the additive parameterization
  ``(theta, log sigma^2)``, ``log alpha = log sigma^2 - log theta^2`` (Molchanov et al. 2017).
  With the log-uniform prior, weights whose ``log alpha`` exceeds a threshold (3) are pruned.
* :class:`VariationalDropout` -- ``q(w) = N(theta, alpha theta^2)`` with ``alpha`` shared per layer
  (type A) or per input unit (type B), Kingma, Salimans & Welling (2015); the learned dropout rate
  is ``p = alpha / (1 + alpha)``, capped at ``max_dropout`` (Kingma: alpha ≤ 1, p ≤ 0.5).
* :class:`MeanFieldGaussian` -- Bayes by Backprop (Blundell et al. 2015), softplus scales that
  start at the same noise-to-signal ratio in every layer.
* :class:`MCDropout` -- Bernoulli dropout on each layer's input units as a variational family
  (Gal & Ghahramani 2016), ``w = M diag(z) / (1 - p)`` with ``z ~ Bernoulli(1 - p)``.

Under :class:`zoo.handlers.lrt.LocalReparameterization` the Gaussian guides drive the local
reparameterization trick and :class:`MCDropout` draws its masks per example.

Usage::

    from zoo.models.bnn import BNN, BNNConfig, build_net
    info = zoo.data.dataset_info("fashion-mnist")
    model = BNN(lambda: build_net(BNNConfig(), info), LogUniform(), info)   # LeNet-300-100
    guide = SparseVD(model)
    guide.log_alpha()["net.1.weight"].shape          # torch.Size([300, 784])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import constraints
from torch.distributions.kl import register_kl
from torch.distributions.utils import lazy_property

from guides.meanfield import DEFAULT_INIT_ALPHA, MeanFieldNormal, relative_init_scale
from zoo.priors import (
    LOG_ALPHA_EPS,
    ImproperLogUniform,
    WeightSite,
    log_alpha,
    sparse_vd_kl,
    weight_sites,
)

__all__ = [
    "LOG_SIGMA2_MIN",
    "DropoutWeight",
    "GaussianDropout",
    "LogVarianceNormal",
    "MCDropout",
    "MeanFieldGaussian",
    "SparseVD",
    "VariationalDropout",
    "WeightGuide",
]


class DropoutWeight(TorchDistribution):
    """Bernoulli dropout on the input units of a weight tensor, as a distribution over weights.

    ``w = loc * z / (1 - p)`` with one ``z ~ Bernoulli(1 - p)`` per input unit (the input
    features of a ``Linear`` weight, the input channels of a ``Conv1d/2d/3d`` one), so
    ``E[w] = loc``.  A convolution with ``groups > 1`` holds ``C_in / groups`` input channels in
    dimension 1 of its weight, one set per group: each group's channels get their own masks, so
    every input channel of the layer is dropped independently, exactly as
    :meth:`dropout_input` drops the channels of ``x``.  The family is a mixture of point masses:
    ``log_prob`` is 0 and its entropy, which no parameter touches, is dropped, as in Gal &
    Ghahramani (2016).

    Usage::

        q = DropoutWeight(torch.randn(8, 2, 3), 0.5, groups=2)   # Conv1d(4, 8, 3, groups=2)
        w = q.rsample()              # the 4 input channels dropped independently

    :param loc: the weight means ``M`` (at least 2-D).
    :param p: the drop probability, ``0 <= p < 1``.
    :param groups: the layer's groups; ``loc.shape[0]`` must be a multiple.
    """

    arg_constraints = {"loc": constraints.real}  # noqa: RUF012
    support = constraints.real
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        p: float,
        validate_args: bool | None = None,
        *,
        groups: int = 1,
    ) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        if loc.dim() < 2:
            raise ValueError(
                f"loc must have an output and an input dimension, got {tuple(loc.shape)}"
            )
        if groups < 1 or loc.shape[0] % groups:
            raise ValueError(
                f"groups must be a positive divisor of the {loc.shape[0]} output units, "
                f"got {groups}"
            )
        self.loc, self.p, self.groups = loc, float(p), int(groups)
        super().__init__(loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != self.batch_shape:
            raise ValueError("DropoutWeight cannot be expanded to a new batch shape")
        return self

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return self.loc.square() * (self.p / (1.0 - self.p))

    def _keep(self, shape: tuple[int, ...]) -> torch.Tensor:
        keep = torch.full(shape, 1.0 - self.p, dtype=self.loc.dtype, device=self.loc.device)
        return torch.bernoulli(keep) / (1.0 - self.p)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        # One mask per (group, input unit), shared by the group's outputs and kernel taps.
        out, inputs = self.loc.shape[:2]
        taps = (1,) * (self.loc.dim() - 2)
        keep = self._keep((*sample_shape, self.groups, 1, inputs, *taps))
        keep = keep.expand(*sample_shape, self.groups, out // self.groups, inputs, *taps)
        return self.loc * keep.reshape(*sample_shape, out, inputs, *taps)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(value)

    def dropout_input(self, x: torch.Tensor, feature_dim: int) -> torch.Tensor:
        """``x`` with its own mask per example: the same law per example, no weight formed.

        :param feature_dim: the dimension of ``x`` the weight's input units index: -1 for a
            ``Linear`` layer (whatever dimensions lie between), 1 for the channels of a
            ``Conv1d/2d/3d`` (each of the ``C_in`` channels, whatever the groups).
        """
        shape = [1] * x.dim()
        shape[0], shape[feature_dim] = x.shape[0], x.shape[feature_dim]
        return x * self._keep(tuple(shape))


@register_kl(DropoutWeight, dist.Normal)
def _kl_dropout_normal(q: DropoutWeight, p: dist.Normal) -> torch.Tensor:
    # E_q[-log p(w)] in closed form; the mask's entropy is a constant (Gal & Ghahramani 2016).
    second_moment = (q.loc - p.loc).square() + q.variance
    return second_moment / (2 * p.scale.square()) + p.scale.log() + 0.5 * math.log(2 * math.pi)


@register_kl(DropoutWeight, ImproperLogUniform)
def _kl_dropout_loguniform(q: DropoutWeight, p: ImproperLogUniform) -> torch.Tensor:
    raise ValueError(
        "MC dropout puts point masses at w = 0, where the log-uniform prior has infinite "
        "density: pair MCDropout with a Normal prior"
    )


#: The smallest ``log sigma^2`` the sparse-VD guide uses (see ``_AdditiveNormal``).
LOG_SIGMA2_MIN = -30.0


class _AdditiveNormal(PyroModule):
    """``N(theta, exp(log_sigma2))`` over one weight tensor (Molchanov et al. 2017, sec. 4.2)."""

    def __init__(self, site: WeightSite, init_log_sigma2: float) -> None:
        super().__init__()
        self.site = site.name
        self.theta = nn.Parameter(site.init.clone())
        self.log_sigma2 = nn.Parameter(torch.full(site.shape, float(init_log_sigma2)))

    def distribution(self) -> dist.TorchDistribution:
        # A floor of sigma^2 = e^-30 keeps sigma from underflowing to 0 in float32 (an invalid
        # Normal) and its log-density finite; no weight needs less noise than that.
        log_sigma2 = self.log_sigma2.clamp(min=LOG_SIGMA2_MIN)
        return LogVarianceNormal(self.theta, log_sigma2).to_event(self.theta.dim())


class LogVarianceNormal(dist.Normal):
    """``N(loc, exp(log_variance))`` that keeps ``log sigma^2`` for the KL and the LRT.

    The same distribution as ``Normal(loc, exp(log_variance / 2))``; the local
    reparameterization reads ``variance`` and the registered KL ``log_variance`` directly, and
    ``scale`` is computed only if something asks for it (sampling, ``log_prob``): on a step of
    sparse VD under the LRT, nothing does.
    """

    def __init__(
        self, loc: torch.Tensor, log_variance: torch.Tensor, validate_args: bool | None = None
    ) -> None:
        self.loc, self.log_variance = torch.broadcast_tensors(loc, log_variance)
        TorchDistribution.__init__(self, self.loc.shape, validate_args=validate_args)

    @lazy_property
    def scale(self) -> torch.Tensor:  # type: ignore[override]
        return (0.5 * self.log_variance).exp()

    @property
    def variance(self) -> torch.Tensor:
        return self.log_variance.exp()

    def expand(self, batch_shape, _instance=None):
        """The same distribution with ``loc`` and ``log_variance`` expanded to ``batch_shape``."""
        batch_shape = torch.Size(batch_shape)
        return LogVarianceNormal(
            self.loc.expand(batch_shape), self.log_variance.expand(batch_shape), self._validate_args
        )


@register_kl(LogVarianceNormal, ImproperLogUniform)
def _kl_log_variance_normal_loguniform(q: LogVarianceNormal, p: ImproperLogUniform) -> torch.Tensor:
    # log alpha = log sigma^2 - log theta^2, with the same eps as zoo.priors.log_alpha
    la = (q.log_variance - (q.loc.square() + LOG_ALPHA_EPS).log()).clamp(*p.log_alpha_clip)
    kl = sparse_vd_kl(la)
    return kl.expand(torch.broadcast_shapes(kl.shape, p.batch_shape))


class GaussianDropout(dist.Normal):
    """``N(theta, alpha theta^2)`` that keeps ``log alpha`` itself for the KL.

    Recomputing alpha from the mean and scale would be wrong for weights near zero (where the
    scale needs a floor to stay valid); the registered KL below reads ``log_alpha`` instead.
    """

    def __init__(
        self, loc: torch.Tensor, log_alpha: torch.Tensor, validate_args: bool | None = None
    ) -> None:
        self.log_alpha = log_alpha.expand_as(loc)
        # The 1e-16 keeps the scale strictly positive for a weight at exactly zero.
        scale = (self.log_alpha.exp() * loc.square() + 1e-16).sqrt()
        super().__init__(loc, scale, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        """The same distribution with ``loc`` and ``log_alpha`` expanded to ``batch_shape``."""
        return GaussianDropout(
            self.loc.expand(batch_shape), self.log_alpha.expand(batch_shape), self._validate_args
        )


@register_kl(GaussianDropout, ImproperLogUniform)
def _kl_gaussian_dropout_loguniform(q: GaussianDropout, p: ImproperLogUniform) -> torch.Tensor:
    kl = sparse_vd_kl(q.log_alpha.clamp(*p.log_alpha_clip))
    return kl.expand(torch.broadcast_shapes(kl.shape, p.batch_shape))


def _groups(site: WeightSite) -> int:
    return int(getattr(site.module, "groups", 1))


class _SharedAlphaNormal(PyroModule):
    """``N(theta, alpha theta^2)``, ``log alpha`` per layer or per input unit (Kingma 2015).

    Per unit, ``log_alpha`` has shape ``(1, C_in, 1, ...)``: one value per input feature or
    channel of the layer.  A grouped convolution's weight holds ``C_in / groups`` channels in
    dimension 1, so group ``g``'s outputs read the values of channels ``g C_in/groups`` on.
    """

    def __init__(self, site: WeightSite, per: str, init_log_alpha: float, max_log_alpha: float):
        super().__init__()
        self.site = site.name
        self.max_log_alpha = max_log_alpha
        self.theta = nn.Parameter(site.init.clone())
        self.groups = 1 if per == "layer" else _groups(site)
        taps = (1,) * (len(site.shape) - 2)
        shape = () if per == "layer" else (1, self.groups * site.shape[1], *taps)
        self.log_alpha = nn.Parameter(torch.full(shape, float(init_log_alpha)))

    def weight_log_alpha(self) -> torch.Tensor:
        """The clamped ``log alpha``, broadcastable to (for groups > 1: of) the weight's shape."""
        log_alpha = self.log_alpha.clamp(max=self.max_log_alpha)
        if self.groups == 1:
            return log_alpha
        out, inputs, *taps = self.theta.shape
        per_group = log_alpha.reshape(self.groups, 1, inputs, *(1 for _ in taps))
        expanded = per_group.expand(self.groups, out // self.groups, inputs, *taps)
        return expanded.reshape(self.theta.shape)

    def alpha(self) -> torch.Tensor:
        return self.weight_log_alpha().exp()

    def distribution(self) -> dist.TorchDistribution:
        return GaussianDropout(self.theta, self.weight_log_alpha()).to_event(self.theta.dim())


class _DropoutSite(PyroModule):
    def __init__(self, site: WeightSite, p: float) -> None:
        super().__init__()
        self.site = site.name
        self.p = p
        self.groups = _groups(site)
        self.loc = nn.Parameter(site.init.clone())

    def distribution(self) -> dist.TorchDistribution:
        q = DropoutWeight(self.loc, self.p, groups=self.groups)
        return q.to_event(self.loc.dim())


class WeightGuide(PyroModule):
    """Base class: one sub-guide per Bayesian weight of ``model``, sampled in model order.

    :param model: a module holding layers made Bayesian by a :class:`zoo.priors.Prior`.
    :param make_site: ``(index, site) -> PyroModule`` with ``.site`` and ``.distribution()``.
    """

    def __init__(self, model: nn.Module, make_site: Callable[[int, WeightSite], PyroModule]):
        super().__init__()
        sites = weight_sites(model)
        if not sites:
            raise ValueError(
                f"{type(model).__name__} has no Bayesian weights: apply a zoo.priors prior first"
            )
        self.sites = PyroModule[nn.ModuleList]([make_site(i, s) for i, s in enumerate(sites)])
        # A recurrent layer's weights are drawn once per minibatch, never through the LRT
        # (zoo.recurrent): not marked as weights, so that the LRT handler does not skip the draw.
        self.shared_draws = frozenset(s.name for s in sites if s.shared_draw)

    @property
    def site_names(self) -> list[str]:
        return [s.site for s in self.sites]

    def forward(self, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        # "weight" lets zoo.handlers.lrt skip the draw, which its layers never read (see there)
        return {
            s.site: pyro.sample(
                s.site, s.distribution(), infer={"weight": s.site not in self.shared_draws}
            )
            for s in self.sites
        }

    def posterior(self, name: str) -> dist.TorchDistribution:
        """``q`` of the site ``name``."""
        for s in self.sites:
            if s.site == name:
                return s.distribution()
        raise ValueError(f"no weight site {name!r}; the guide has {self.site_names}")

    def log_alpha(self) -> dict[str, torch.Tensor] | None:
        """``log sigma^2 - log theta^2`` per weight and site; ``None`` where undefined."""
        return None

    def dropout_rates(self) -> dict[str, torch.Tensor] | None:
        """The (learned or fixed) dropout rate ``p = alpha / (1 + alpha)`` per weight and site."""
        la = self.log_alpha()
        return None if la is None else {k: torch.sigmoid(v) for k, v in la.items()}

    def masks(self, threshold: float = 3.0) -> dict[str, torch.Tensor]:
        """``True`` for the weights kept: ``log alpha <= threshold`` (all kept without alpha)."""
        la = self.log_alpha()
        if la is None:
            return {
                s.site: torch.ones_like(s.distribution().mean, dtype=torch.bool) for s in self.sites
            }
        return {k: v <= threshold for k, v in la.items()}

    def mean_weights(self, threshold: float | None = 3.0) -> dict[str, torch.Tensor]:
        """The posterior means, pruned (zeroed where ``log alpha > threshold``) unless ``None``."""
        means = {s.site: s.distribution().mean for s in self.sites}
        if threshold is None:
            return means
        masks = self.masks(threshold)
        return {
            k: torch.where(masks[k].to(v.device), v, torch.zeros_like(v)) for k, v in means.items()
        }


class SparseVD(WeightGuide):
    """Sparse variational dropout: a Gaussian per weight, ``(theta, log sigma^2)`` learned.

    Molchanov, Ashukha & Vetrov, "Variational Dropout Sparsifies Deep Neural Networks",
    ICML 2017.  ``theta`` starts at the network's own initialization, ``log sigma^2`` at -10
    (the authors' value).

    :param model: the Bayesian network.
    :param init_log_sigma2: initial ``log sigma^2`` of every weight.
    """

    def __init__(self, model: nn.Module, *, init_log_sigma2: float = -10.0) -> None:
        super().__init__(model, lambda i, s: _AdditiveNormal(s, init_log_sigma2))

    def log_alpha(self) -> dict[str, torch.Tensor]:
        return {
            s.site: s.log_sigma2.clamp(min=LOG_SIGMA2_MIN)
            - (s.theta.square() + LOG_ALPHA_EPS).log()
            for s in self.sites
        }


class VariationalDropout(WeightGuide):
    """Gaussian dropout with a learned rate shared per layer (type A) or per unit (type B).

    Kingma, Salimans & Welling, "Variational Dropout and the Local Reparameterization Trick",
    NeurIPS 2015.  Type B's unit is the layer's input unit (a feature or channel; each channel
    of a grouped convolution has its own): dropping a unit scales all its outgoing weights.
    The noise is independent per weight (their sec. 3.2), which is what the local
    reparameterization needs.

    :param model: the Bayesian network.
    :param per: ``"layer"`` (type A) or ``"unit"`` (type B).
    :param init_dropout: initial dropout rate ``p``.
    :param max_dropout: cap on ``p``; 0.5 (``alpha <= 1``) is the range the paper trusts.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        per: str = "layer",
        init_dropout: float = 0.2,
        max_dropout: float = 0.5,
    ) -> None:
        if per not in ("layer", "unit"):
            raise ValueError(f"per must be 'layer' or 'unit', got {per!r}")
        if not 0.0 < init_dropout <= max_dropout < 1.0:
            raise ValueError(
                "need 0 < init_dropout <= max_dropout < 1, got "
                f"init_dropout={init_dropout}, max_dropout={max_dropout}"
            )
        init, cap = (math.log(p / (1 - p)) for p in (init_dropout, max_dropout))
        super().__init__(model, lambda i, s: _SharedAlphaNormal(s, per, init, cap))
        self.per = per

    def log_alpha(self) -> dict[str, torch.Tensor]:
        return {s.site: s.weight_log_alpha().expand_as(s.theta) for s in self.sites}


class MeanFieldGaussian(WeightGuide):
    """Bayes by Backprop: ``N(mu, softplus(rho)^2)`` per weight (Blundell et al., ICML 2015).

    ``mu`` starts at the network's own initialization.  Every scale of a weight tensor starts at
    :func:`guides.meanfield.relative_init_scale` of it, ``sqrt(init_alpha * mean(mu^2))``:
    each layer's weight noise starts as the same share ``init_alpha`` of its pre-activations'
    variance (0.01 by default, a tenth of their spread), whatever its fan-in.  ``init_scale``
    sets one scale for every weight instead.

    Usage::

        guide = MeanFieldGaussian(model)                     # the per-layer rule
        guide = MeanFieldGaussian(model, init_scale=0.05)    # one scale for every weight

    :param model: the Bayesian network.
    :param init_scale: initial standard deviation of every weight; the per-layer rule when
        ``None``.
    :param init_alpha: the rule's noise-to-signal ratio (ignored with ``init_scale``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        init_scale: float | None = None,
        init_alpha: float = DEFAULT_INIT_ALPHA,
    ) -> None:
        if init_scale is not None and not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        if not init_alpha > 0:
            raise ValueError(f"init_alpha must be positive, got {init_alpha}")

        def make_site(i: int, s: WeightSite) -> MeanFieldNormal:
            scale = relative_init_scale(s.init, init_alpha) if init_scale is None else init_scale
            return MeanFieldNormal(s.name, tuple(s.shape), init_loc=s.init, init_scale=scale)

        super().__init__(model, make_site)

    def log_alpha(self) -> dict[str, torch.Tensor]:
        out = {}
        for s in self.sites:
            q = s.distribution().base_dist
            out[s.site] = log_alpha(q.loc, q.scale)
        return out

    def masks(self, threshold: float = 3.0) -> dict[str, torch.Tensor]:
        # A Gaussian prior gives no pruning rule: every weight is kept.
        return {s.site: torch.ones_like(s.loc, dtype=torch.bool) for s in self.sites}


class MCDropout(WeightGuide):
    """MC (Bernoulli) dropout as variational inference, Gal & Ghahramani, ICML 2016.

    Each layer's inputs are dropped with probability ``p`` (``p_first`` for the first layer, the
    pixels); predictions average over masks.  Its KL to a Gaussian prior is the L2 penalty of
    the paper (registered above).

    :param model: the Bayesian network.
    :param p: dropout rate of hidden layers' inputs.
    :param p_first: dropout rate of the first layer's inputs.
    """

    def __init__(self, model: nn.Module, *, p: float = 0.5, p_first: float = 0.2) -> None:
        for name, value in (("p", p), ("p_first", p_first)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        super().__init__(model, lambda i, s: _DropoutSite(s, p_first if i == 0 else p))

    def dropout_rates(self) -> dict[str, torch.Tensor]:
        return {s.site: torch.full_like(s.loc, s.p) for s in self.sites}
