"""Weight priors that turn any ``nn.Module`` into a Bayesian one, and their registered KLs.

A :class:`Prior` rewrites the ``Linear``, ``Conv1d``, ``Conv2d``, ``Conv3d``, ``RNN``, ``LSTM``
and ``GRU`` layers of an existing network in place (:meth:`Prior.apply_`, all of them or those
a ``layers=`` selector picks): each weight becomes a ``PyroSample`` site named after the
layer's path (``"net.0.weight"``) and biases stay ordinary, point-estimated parameters, as in
Molchanov et al. (2017).  The architecture's own ``forward`` is untouched; the layers' class is
swapped for a subclass whose forward asks :mod:`zoo.handlers.lrt` whether to use the local
reparameterization.
A recurrent layer's weights (``weight_ih_l0``, ``weight_hh_l0``, ...) become one site each,
drawn once per minibatch and shared by all time steps (:mod:`zoo.recurrent`, Lobacheva et al.
2017).  Any other module with parameters (``BatchNorm``, ``LayerNorm``, ``Embedding``, ...)
stays deterministic, and ``apply_`` names each in one warning (:func:`deterministic_layers`).

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

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.nn import PyroModule, PyroSample
from pyro.nn.module import to_pyro_module_
from torch import nn
from torch.distributions import constraints
from torch.distributions.kl import register_kl

from zoo.handlers import lrt
from zoo.recurrent import SampledRecurrent, recurrent_weight_names
from zoo.util import CopiesAsItself

__all__ = [
    "BAYESIAN_TYPES",
    "KL_K1",
    "KL_K2",
    "KL_K3",
    "LOG_ALPHA_EPS",
    "BayesianConv1d",
    "BayesianConv2d",
    "BayesianConv3d",
    "BayesianGRU",
    "BayesianLSTM",
    "BayesianLinear",
    "BayesianRNN",
    "ImproperLogUniform",
    "LayerSelector",
    "LogUniform",
    "Normal",
    "Prior",
    "WeightSite",
    "deterministic_layers",
    "layer_type",
    "log_alpha",
    "select_layers",
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


class _BayesianLayer(CopiesAsItself):
    """Mixin for the swapped layer classes; the weight is a ``PyroSample`` set by a prior.  It
    comes first among their bases, so that a deep copy keeps the class
    (:class:`~zoo.util.CopiesAsItself`)."""

    _zoo_prior: Prior
    _zoo_weight_init: torch.Tensor


class BayesianLinear(_BayesianLayer, PyroModule[nn.Linear]):
    """``nn.Linear`` whose weight is a sample site; see :func:`zoo.handlers.lrt.linear`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return lrt.linear(input, self.weight, self.bias)


def _conv_forward(layer: nn.Module, input: torch.Tensor) -> torch.Tensor:
    # As nn.ConvNd does: a non-zero padding mode pads the input first.  The LRT is exact for
    # any fixed input, so padding before it changes nothing in its law.
    padding = layer.padding
    if layer.padding_mode != "zeros":
        input = F.pad(input, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
        padding = 0
    return lrt.conv(
        input,
        layer.weight,
        layer.bias,
        layer.stride,
        padding,
        layer.dilation,
        layer.groups,
        dims=len(layer.kernel_size),
    )


class BayesianConv1d(_BayesianLayer, PyroModule[nn.Conv1d]):
    """``nn.Conv1d`` whose weight is a sample site; see :func:`zoo.handlers.lrt.conv`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _conv_forward(self, input)


class BayesianConv2d(_BayesianLayer, PyroModule[nn.Conv2d]):
    """``nn.Conv2d`` whose weight is a sample site; see :func:`zoo.handlers.lrt.conv`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _conv_forward(self, input)


class BayesianConv3d(_BayesianLayer, PyroModule[nn.Conv3d]):
    """``nn.Conv3d`` whose weight is a sample site; see :func:`zoo.handlers.lrt.conv`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _conv_forward(self, input)


class BayesianRNN(_BayesianLayer, SampledRecurrent, PyroModule[nn.RNN]):
    """``nn.RNN`` whose weights are sample sites, one draw per minibatch (:mod:`zoo.recurrent`)."""


class BayesianLSTM(_BayesianLayer, SampledRecurrent, PyroModule[nn.LSTM]):
    """``nn.LSTM`` whose weights are sample sites, one draw per minibatch (:mod:`zoo.recurrent`)."""


class BayesianGRU(_BayesianLayer, SampledRecurrent, PyroModule[nn.GRU]):
    """``nn.GRU`` whose weights are sample sites, one draw per minibatch (:mod:`zoo.recurrent`)."""


_SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: BayesianLinear,
    nn.Conv1d: BayesianConv1d,
    nn.Conv2d: BayesianConv2d,
    nn.Conv3d: BayesianConv3d,
    nn.RNN: BayesianRNN,
    nn.LSTM: BayesianLSTM,
    nn.GRU: BayesianGRU,
}
#: The layer types a prior makes Bayesian (exact types: a subclass may have its own forward).
BAYESIAN_TYPES: tuple[type[nn.Module], ...] = tuple(_SWAPS)
_SUPPORTED = "Linear, Conv1d, Conv2d, Conv3d, RNN, LSTM and GRU"


@dataclass(frozen=True)
class WeightSite:
    """One Bayesian weight of a network: its site name, shape, initial value and layer."""

    name: str
    shape: torch.Size
    init: torch.Tensor
    module: nn.Module

    @property
    def kind(self) -> str:
        """``"linear"``, ``"conv1d"``/``"2d"``/``"3d"``, ``"rnn"``, ``"lstm"`` or ``"gru"``."""
        if isinstance(self.module, nn.Linear):
            return "linear"
        if isinstance(self.module, nn.RNNBase):
            return layer_type(self.module).lower()
        return f"conv{len(self.module.kernel_size)}d"

    @property
    def shared_draw(self) -> bool:
        """Whether the layer uses one draw per minibatch, never the local reparameterization
        (a recurrent layer's weights, :mod:`zoo.recurrent`)."""
        return isinstance(self.module, nn.RNNBase)


def _weight_inits(module: nn.Module) -> dict[str, torch.Tensor]:
    # A recurrent layer has several Bayesian weights; the others one, "weight".
    inits = getattr(module, "_zoo_weight_inits", None)
    return {"weight": module._zoo_weight_init} if inits is None else inits


def _weight_prior(module: nn.Module, attr: str = "weight") -> dist.Distribution:
    anchor = module._zoo_anchor
    shape = _weight_inits(module)[attr].shape
    return module._zoo_prior.distribution(shape, anchor).to_event(len(shape))


def _make_recurrent(m: nn.Module, cls: type, prior: Prior, anchor: torch.Tensor) -> None:
    # Every weight_* parameter becomes a site named after it; the biases stay parameters.
    names = recurrent_weight_names(m)
    inits = {n: getattr(m, n).detach().clone() for n in names}
    m.__class__ = _SWAPS[cls]
    for n in names:
        delattr(m, n)
    m.register_buffer("_zoo_anchor", anchor, persistent=False)
    m._zoo_prior = prior
    m._zoo_weight_inits = inits
    for n in names:
        # PyroModule's own setattr: nn.RNNBase's would read every weight, some already deleted
        PyroModule.__setattr__(m, n, PyroSample(functools.partial(_weight_prior, attr=n)))
    m._init_flat_weights()


# --------------------------------------------------------------------------------------------
# Which layers: the layers= selector, and the layers left deterministic

#: What ``layers=`` accepts: see :func:`select_layers`.
LayerSelector = (
    type[nn.Module]
    | tuple[type[nn.Module], ...]
    | str
    | Sequence[str]
    | Callable[[str, nn.Module], bool]
    | None
)


def _base_type(module: nn.Module) -> type:
    # The class its author wrote: nn.LSTM for the PyroLSTM that to_pyro_module_ makes of it.
    for cls in type(module).__mro__:
        if not issubclass(cls, PyroModule | CopiesAsItself):
            return cls
    return type(module)


def layer_type(module: nn.Module) -> str:
    """The class name of ``module`` as its author wrote it (``"LSTM"``, not ``"PyroLSTM"``)."""
    return _base_type(module).__name__


def _swappable(module: nn.Module) -> bool:
    # Exactly one of the supported types (a subclass may have its own forward), plain or as
    # PyroModule[...], with its weights still ordinary parameters.
    cls = _base_type(module)
    if cls not in _SWAPS:
        return False
    names = recurrent_weight_names(module) if issubclass(cls, nn.RNNBase) else ("weight",)
    return bool(names) and all(isinstance(module._parameters.get(n), nn.Parameter) for n in names)


def _describe(layers: Sequence[tuple[str, nn.Module]]) -> str:
    return ", ".join(f"{name or '<the net itself>'} ({layer_type(m)})" for name, m in layers)


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def deterministic_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of ``net`` that hold parameters of their own and are not Bayesian layers.

    Each is named by its qualified name, as in ``named_modules``: a module that owns parameters
    directly (``BatchNorm1d``, ``Embedding``, a ``Linear`` left out by ``layers=``, a custom
    module's own ``nn.Parameter``) is listed; a pure container (``Sequential``) is not, its
    children are.  After :meth:`Prior.apply_` these are the layers whose parameters stay point
    estimates: no prior, no noise, not pruned and not counted in a pruning report's compression.

    Usage::

        net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4))
        LogUniform().apply_(net)        # warns: 1 (BatchNorm1d) stays deterministic
        deterministic_layers(net)       # [('1', BatchNorm1d(4, ...))]
    """
    return [
        (name, m)
        for name, m in net.named_modules()
        if not isinstance(m, _BayesianLayer) and _owns_parameters(m)
    ]


def _layers_text(net: nn.Module) -> str:
    candidates = [(n, m) for n, m in net.named_modules() if _swappable(m)]
    others = [(n, m) for n, m in deterministic_layers(net) if not _swappable(m)]
    return (
        f"its layers that can be Bayesian: {_describe(candidates) or 'none'}; its other "
        f"parametrized layers: {_describe(others) or 'none'}"
    )


def _matches(pattern: str, name: str) -> bool:
    # The layer itself or any module above it: "features" selects every layer in features.
    parts = name.split(".")
    return any(fnmatchcase(".".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def _by_pattern(net: nn.Module, patterns: list[str], candidates: list) -> list:
    for pattern in patterns:
        if not any(_matches(pattern, n) for n, _ in candidates):
            raise ValueError(
                f"layers= pattern {pattern!r} matches no Linear, Conv1d/2d/3d, RNN, LSTM or GRU "
                f"layer of "
                f"{layer_type(net)}; {_layers_text(net)}"
            )
    return [(n, m) for n, m in candidates if any(_matches(p, n) for p in patterns)]


def select_layers(net: nn.Module, layers: LayerSelector = None) -> list[tuple[str, nn.Module]]:
    """The layers of ``net`` that :meth:`Prior.apply_` makes Bayesian, in module order.

    Only layers of exactly the types in :data:`BAYESIAN_TYPES` can be chosen; ``layers`` is

    * ``None``: all of them;
    * a type or a tuple of types (``nn.Conv1d``): those of these types;
    * a qualified name or glob pattern, or a list of them (``["features.*", "head"]``): the
      layers whose name, or the name of a module above them, matches one (``fnmatch``, case
      sensitive); every pattern must match at least one layer;
    * a callable ``(qualified_name, layer) -> bool``.

    Usage::

        select_layers(net, nn.Conv1d)              # [('features.0', Conv1d(...)), ...]
        select_layers(net, ["head"])               # [('head', Linear(...))]

    :raises ValueError: when the selector is of another kind, names a type that cannot be
        Bayesian, or selects nothing; the message names the layers ``net`` has.
    """
    candidates = [(n, m) for n, m in net.named_modules() if _swappable(m)]
    if isinstance(layers, type) or (
        isinstance(layers, tuple) and layers and all(isinstance(t, type) for t in layers)
    ):
        types = (layers,) if isinstance(layers, type) else layers
        bad = [t.__name__ for t in types if not issubclass(t, BAYESIAN_TYPES)]
        if bad:
            raise ValueError(
                f"layers= names types a prior cannot make Bayesian: {', '.join(bad)}; "
                f"it supports {_SUPPORTED}"
            )
        chosen = [(n, m) for n, m in candidates if isinstance(m, types)]
    elif isinstance(layers, str) or (
        isinstance(layers, list | tuple) and all(isinstance(p, str) for p in layers)
    ):
        patterns = [layers] if isinstance(layers, str) else list(layers)
        chosen = _by_pattern(net, patterns, candidates)
    elif layers is None:
        chosen = candidates
    elif callable(layers) and not isinstance(layers, nn.Module):
        chosen = [(n, m) for n, m in candidates if layers(n, m)]
    else:
        raise ValueError(
            "layers= must be None, a layer type or tuple of types, a name or glob pattern or a "
            f"list of them, or a callable (name, layer) -> bool; got {layers!r}"
        )
    if not chosen:
        what = "has no" if layers is None else "has no selected"
        raise ValueError(
            f"{layer_type(net)} {what} Linear, Conv1d/2d/3d, RNN, LSTM or GRU layer to make "
            f"Bayesian; {_layers_text(net)}"
        )
    return chosen


def _warn_deterministic(net: nn.Module, prior: Prior) -> None:
    # Layers a selector left out were chosen by the caller; the ones named here were not.
    left = [(n, m) for n, m in deterministic_layers(net) if not _swappable(m)]
    if left:
        warnings.warn(
            f"{type(prior).__name__}.apply_ leaves {len(left)} parametrized layer(s) of "
            f"{layer_type(net)} deterministic: {_describe(left)}. Their parameters stay "
            f"point estimates (no prior, no noise, never pruned) and a pruning report's "
            f"compression does not count them; a prior makes {_SUPPORTED} layers Bayesian.",
            UserWarning,
            stacklevel=3,
        )


class Prior:
    """A prior over the weights of ``Linear``, ``ConvNd`` and recurrent layers; subclasses give
    its form."""

    def distribution(self, shape: torch.Size, anchor: torch.Tensor) -> dist.Distribution:
        """The prior of one weight tensor, batch shape ``shape`` (``anchor`` fixes device/dtype)."""
        raise NotImplementedError

    def apply_(self, net: nn.Module, *, layers: LayerSelector = None) -> nn.Module:
        """Make the weights of ``net``'s ``Linear``/``Conv1d``/``Conv2d``/``Conv3d`` layers,
        and the ``weight_*`` tensors of its ``RNN``/``LSTM``/``GRU`` layers, sample sites, in place.

        Every other module that holds parameters of its own (``BatchNorm``, ``LayerNorm``,
        ``Embedding``, ...) stays deterministic, and one ``UserWarning``
        names them all (see :func:`deterministic_layers`).  Layers of a supported type that
        ``layers`` leaves out stay deterministic too, without a warning: the caller chose them.

        :param net: any module; it becomes a ``PyroModule`` (its ``forward`` is unchanged).
        :param layers: which layers (all by default); see :func:`select_layers`.
        :returns: ``net``.
        :raises ValueError: if no layer qualifies or ``net`` already has Bayesian layers.
        """
        for name, m in net.named_modules():
            if isinstance(m, _BayesianLayer):
                raise ValueError(f"layer {name!r} is already Bayesian; apply a prior once")
        targets = [(m, _base_type(m)) for _, m in select_layers(net, layers)]
        to_pyro_module_(net)
        for m, cls in targets:
            if issubclass(cls, nn.RNNBase):
                anchor = next(m.parameters()).detach()
                zero = torch.zeros((), dtype=anchor.dtype, device=anchor.device)
                _make_recurrent(m, cls, self, zero)
                continue
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
            # a partial, not the function: Pyro renames a named prior function in place (for
            # its decorator use), after which pickle can no longer find it in this module
            m.weight = PyroSample(functools.partial(_weight_prior))
        _warn_deterministic(net, self)
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
            prefix = f"{m._pyro_name}." if m._pyro_name else ""
            for attr, init in _weight_inits(m).items():
                sites.append(WeightSite(f"{prefix}{attr}", init.shape, init, m))
    return sites
