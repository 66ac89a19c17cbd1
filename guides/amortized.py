"""Amortized guides: an encoder network, and the exact posterior of a conjugate model.

Amortization (Kingma & Welling, 2014) replaces one set of variational parameters per data point
by a function of the data point, so a guide's size does not grow with the dataset and a
minibatch needs no per-example state.

The encoder's gradient can be estimated two ways (:data:`ESTIMATORS`): by reparameterization,
``z = m(x) + s(x) * eps`` (Kingma & Welling 2014), or by the score function (REINFORCE,
Williams 1992), the same ``q`` with reparameterization switched off
(:class:`ScoreFunctionIndependent`), optionally with a control variate: Pyro's decaying-average
baseline or a neural baseline ``b(x)`` trained to predict the downstream cost (Mnih & Gregor
2014).  The
score-function variants need :class:`pyro.infer.TraceGraph_ELBO`, which reads the baselines from
the sample site's ``infer`` dict.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from zoo.plates import data_plate

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus}

#: Gradient estimators of :class:`AmortizedNormal`: reparameterized, and the score function
#: without a baseline, with Pyro's decaying-average baseline, or with a neural baseline.
ESTIMATORS = ("reparam", "score", "score-avg", "score-nn")

# Pyro keeps the decaying-average baseline of a site in the global param store under this name
# (pyro.infer.tracegraph_elbo._construct_baseline).
_AVG_BASELINE_PREFIX = "__baseline_avg_downstream_cost_"


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``tanh``, ``elu``, ``softplus``).

    :raises ValueError: for an unknown name.
    """
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def mlp(widths: Sequence[int], act: str, *, final_activation: bool = False) -> nn.Sequential:
    """``Linear`` layers between consecutive ``widths``, an activation after each but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(widths) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


def conv_sizes(size: tuple[int, int], num_layers: int) -> list[tuple[int, int]]:
    """Spatial sizes through ``num_layers`` convolutions of kernel 4, stride 2, padding 1."""
    sizes = [tuple(size)]
    for _ in range(num_layers):
        h, w = sizes[-1]
        sizes.append(((h - 2) // 2 + 1, (w - 2) // 2 + 1))
    return sizes


def conv_body(
    input_shape: tuple[int, int, int], channels: Sequence[int], act: str
) -> tuple[nn.Sequential, int]:
    """Strided convolutions (kernel 4, stride 2, padding 1) then a flatten, and its output width.

    The DCGAN-style halving (Radford et al. 2016) that conv VAEs commonly use: 28 -> 14 -> 7.
    """
    c, h, w = input_shape
    sizes = conv_sizes((h, w), len(channels))
    if min(sizes[-1]) < 1:
        raise ValueError(f"{len(channels)} stride-2 convolutions do not fit {h}x{w} images")
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise([c, *channels]):
        layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), activation(act)]
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), channels[-1] * math.prod(sizes[-1])


class ScoreFunctionIndependent(dist.Independent):
    """``Independent`` with reparameterization switched off: samples carry no pathwise gradient,
    so Pyro's ELBOs estimate the gradient through the score function ``grad log q(z)``.

    ``has_rsample_(False)`` is Pyro's switch, but it cannot be used here: ``Independent``'s
    ``has_rsample`` is a read-only property, and a plate's ``expand`` rebuilds the base
    distribution, which loses the base's flag.  A class attribute survives ``expand``, which
    builds an instance of the same class.
    """

    has_rsample = False


def estimator_problems(
    estimator: str, baseline_beta: float, allowed: Sequence[str] = ESTIMATORS
) -> list[str]:
    """What is wrong with a gradient estimator's settings (empty when nothing is), for the
    configs that collect their problems and the guides that raise them."""
    problems = []
    if estimator not in allowed:
        problems.append(f"estimator must be one of {tuple(allowed)}, got {estimator!r}")
    if not 0 <= baseline_beta < 1:
        problems.append(f"baseline_beta must lie in [0, 1), got {baseline_beta}")
    return problems


def check_estimator(
    estimator: str, baseline_beta: float, allowed: Sequence[str] = ESTIMATORS
) -> None:
    """:raises ValueError: naming every problem :func:`estimator_problems` finds."""
    problems = estimator_problems(estimator, baseline_beta, allowed)
    if problems:
        raise ValueError("; ".join(problems))


def refuse_vectorized_neural_baseline(estimator: str, train: Any = None) -> None:
    """Refuse a neural baseline (``estimator="score-nn"``) with vectorized particles.

    :raises ValueError: for the neural baseline with ``train.vectorize_particles``: Pyro
        checks that ``b`` has the downstream cost's shape, and ``b``'s output has no particle
        dimension.
    """
    if train is not None and train.vectorize_particles and estimator == "score-nn":
        raise ValueError(
            "estimator 'score-nn' cannot vectorize particles: the neural baseline has no "
            "particle dimension; use num_particles without vectorize_particles"
        )


def _scaled(net: nn.Module, scale: float, x: torch.Tensor) -> torch.Tensor:
    """``scale * b(x)`` of shape ``(B,)``: Pyro requires the downstream cost's shape exactly."""
    return scale * net(x).squeeze(-1)


def baseline_infer(
    estimator: str,
    baseline_beta: float,
    baseline: nn.Module | None,
    inputs: torch.Tensor,
    num_data: int | None,
) -> dict:
    """The ``infer`` dict of a score-function sample site in the data plate, for
    :class:`pyro.infer.TraceGraph_ELBO`: nothing for ``reparam`` and ``score``, Pyro's
    decaying-average baseline for ``score-avg``, and that average plus ``baseline(inputs)`` for
    ``score-nn`` (one input row per example of the minibatch).
    """
    if estimator in ("reparam", "score"):
        return {}
    # Both baselines sit on the running average, as in NVIL (Mnih & Gregor 2014): the
    # network then learns only the input-dependent residual.
    options = {"use_decaying_avg_baseline": True, "baseline_beta": baseline_beta}
    if estimator == "score-nn":
        if baseline is None:
            raise ValueError("estimator 'score-nn' needs a baseline network")
        # The downstream cost carries the plate's N/B scale; b(x) predicts it per example.
        plate_scale = 1.0 if num_data is None else num_data / inputs.shape[0]
        options["nn_baseline"] = functools.partial(_scaled, baseline, plate_scale)
        options["nn_baseline_input"] = inputs
    return {"baseline": options}


class AmortizedNormal(PyroModule):
    """``q(z | x) = N(z; m_phi(x), diag s_phi(x)^2)``, an MLP or conv encoder (Kingma & Welling,
    2014).

    With ``hidden=()`` the encoder is affine, which is enough for linear-Gaussian models such as
    PPCA, whose exact posterior mean is affine in ``x``.  With ``channels`` the input, of shape
    ``input_shape = (C, H, W)``, first goes through strided convolutions.

    Usage::

        guide = AmortizedNormal(input_dim=64, latent_dim=2, hidden=(128,))
        guide(x_batch, num_data=1437)     # samples "z" inside the "data" plate
        sf = AmortizedNormal(64, 2, hidden=(128,), estimator="score-nn")  # TraceGraph_ELBO

    :param input_dim: size of the flattened input.
    :param latent_dim: size of ``z``.
    :param hidden: widths of the hidden layers (after the convolutions, if any).
    :param activation: one of ``relu``, ``tanh``, ``elu``, ``softplus``.
    :param site: the model's local latent site.
    :param channels: output channels of the strided convolutions (empty: an MLP encoder).
    :param input_shape: ``(C, H, W)`` of one example; needed with ``channels``.
    :param estimator: one of :data:`ESTIMATORS`; the score-function ones sample ``z`` without
        a reparameterized path, so only the score function carries the encoder's gradient.
    :param baseline_beta: decay of the ``score-avg`` baseline's moving average.
    :param baseline_hidden: hidden widths of the ``score-nn`` baseline network ``b(x)``.
    :param min_scale: floor of the posterior standard deviation.  It keeps ``log q`` finite
        and, for the score-function estimators, bounds the score of the mean, ``eps / s``.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (),
        activation: str = "relu",
        site: str = "z",
        *,
        channels: Sequence[int] = (),
        input_shape: Sequence[int] | None = None,
        estimator: str = "reparam",
        baseline_beta: float = 0.9,
        baseline_hidden: Sequence[int] = (100,),
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        check_estimator(estimator, baseline_beta)
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale}")
        layers: list[nn.Module] = []
        width = int(input_dim)
        if channels:
            if input_shape is None or len(input_shape) != 3:
                raise ValueError("a conv encoder needs input_shape=(C, H, W)")
            if math.prod(input_shape) != input_dim:
                raise ValueError(f"input_shape {tuple(input_shape)} has no {input_dim} elements")
            body, width = conv_body(tuple(input_shape), channels, activation)
            layers.append(body)
        # flat, so an MLP encoder keeps the layer names of its checkpoints (net.0, net.2, ...)
        widths = [width, *map(int, hidden), 2 * int(latent_dim)]
        layers += list(mlp(widths, activation))
        self.net = nn.Sequential(*layers)
        self.input_dim = int(input_dim)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.conv = bool(channels)
        self.latent_dim = int(latent_dim)
        self.site = site
        self.estimator = estimator
        self.baseline_beta = float(baseline_beta)
        self.min_scale = float(min_scale)
        # b(x) predicts the per-example downstream cost around the running average;
        # TraceGraph_ELBO fits it by least squares
        self.baseline = (
            mlp([self.input_dim, *map(int, baseline_hidden), 1], activation)
            if estimator == "score-nn"
            else None
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior mean and standard deviation for a batch ``x``."""
        inputs = (
            x.reshape(x.shape[0], *self.input_shape) if self.conv else x.reshape(x.shape[0], -1)
        )
        loc, raw = self.net(inputs).chunk(2, dim=-1)
        return loc, F.softplus(raw) + self.min_scale

    def _infer(self, x: torch.Tensor, num_data: int | None) -> dict:
        return baseline_infer(
            self.estimator, self.baseline_beta, self.baseline, x.reshape(x.shape[0], -1), num_data
        )

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        loc, scale = self.encode(x)
        if self.estimator == "reparam":
            q = dist.Normal(loc, scale).to_event(1)
        else:
            q = ScoreFunctionIndependent(dist.Normal(loc, scale), 1)
        with data_plate(x, num_data):
            return pyro.sample(self.site, q, infer=self._infer(x, num_data))


def resize_average_baseline(batch: int, site: str = "z") -> None:
    """Make the decaying-average baseline of ``site`` fit a minibatch of ``batch`` examples.

    Pyro keeps one running average per position in the batch, shaped by the first batch, so a
    smaller last batch would not broadcast.  Minibatches are drawn at random, so the positions
    are exchangeable and their mean carries over to any size.  Call it outside any
    ``PyroModule``'s forward: inside the zoo's calls (``module_local_params`` on, scoped by
    :func:`zoo.util.local_params`) a running module sees only its own store.
    """
    store = pyro.get_param_store()
    name = _AVG_BASELINE_PREFIX + site
    if name not in store or store[name].shape[-1] == batch:
        return
    old = store[name].detach()
    store[name] = old.mean(-1, keepdim=True).expand(*old.shape[:-1], batch).clone()


def reset_average_baseline(site: str | None = None) -> None:
    """Forget the decaying-average baseline of ``site`` (of every site if ``None``), kept in
    Pyro's global param store, so that a new run or a new set of parameters starts afresh."""
    store = pyro.get_param_store()
    prefix = _AVG_BASELINE_PREFIX + ("" if site is None else site)
    for name in [n for n in store.keys() if n.startswith(prefix)]:
        if site is None or name == prefix:
            del store[name]


@contextlib.contextmanager
def frozen_average_baseline(site: str = "z") -> Iterator[None]:
    """Restore the decaying-average baseline of ``site`` on exit: gradients drawn inside see the
    baseline as it stood, which a fixed-parameter probe of the estimator's variance needs."""
    store = pyro.get_param_store()
    name = _AVG_BASELINE_PREFIX + site
    saved = store[name].detach().clone() if name in store else None
    try:
        yield
    finally:
        if saved is None:
            reset_average_baseline(site)
        else:
            store[name] = saved


class AnalyticPosterior(PyroModule):
    """The exact conditional posterior of a conjugate model's local latent.

    The model provides ``local_posterior(x, *globals) -> Distribution``; this guide samples the
    model's global latent sites from ``global_guides`` (if any), then the local site from the
    exact posterior given those values.  With no global latents the ELBO equals the marginal
    log-likelihood for every sample, so SVI is plain maximum likelihood with zero-variance
    gradients (Tipping & Bishop 1999 for PPCA).  With global latents it is the structured guide
    ``q(W) p(z | x, W)``, whose ELBO is ``E_q(W) log p(x | W) - KL(q(W) || p(W))``.

    The model is read, not owned: it is not registered as a submodule, so its parameters are
    neither duplicated in this guide's ``state_dict`` nor counted twice by an optimizer.

    :param model: a module with a ``local_posterior`` method.
    :param global_guides: guides of the model's global sites, passed in that order to
        ``local_posterior``.
    :param site: the model's local latent site.
    """

    def __init__(
        self,
        model: nn.Module,
        global_guides: Sequence[nn.Module] = (),
        site: str = "z",
    ) -> None:
        super().__init__()
        if not callable(getattr(model, "local_posterior", None)):
            raise TypeError(f"{type(model).__name__} has no local_posterior(x, ...) method")
        self.__dict__["_model"] = model
        self.global_guides = nn.ModuleList(global_guides)
        self.site = site

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        values = [g() for g in self.global_guides]
        posterior = self._model.local_posterior(x, *values)
        with data_plate(x, num_data):
            return pyro.sample(self.site, posterior)
