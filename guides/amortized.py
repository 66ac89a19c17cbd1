"""Amortized guides: an encoder network, and the exact posterior of a conjugate model.

Amortization (Kingma & Welling, 2014) replaces one set of variational parameters per data point
by a function of the data point, so a guide's size does not grow with the dataset and a
minibatch needs no per-example state.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from zoo.models.base import data_plate

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus}


class AmortizedNormal(PyroModule):
    """``q(z | x) = N(z; m_phi(x), diag s_phi(x)^2)``, an MLP encoder (Kingma & Welling, 2014).

    With ``hidden=()`` the encoder is affine, which is enough for linear-Gaussian models such as
    PPCA, whose exact posterior mean is affine in ``x``.

    Usage::

        guide = AmortizedNormal(input_dim=64, latent_dim=2, hidden=(128,))
        guide(x_batch, num_data=1437)     # samples "z" inside the "data" plate

    :param input_dim: size of the flattened input.
    :param latent_dim: size of ``z``.
    :param hidden: widths of the hidden layers.
    :param activation: one of ``relu``, ``tanh``, ``elu``, ``softplus``.
    :param site: the model's local latent site.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden: Sequence[int] = (),
        activation: str = "relu",
        site: str = "z",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        widths = [int(input_dim), *map(int, hidden)]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
        layers.append(nn.Linear(widths[-1], 2 * latent_dim))
        self.net = nn.Sequential(*layers)
        self.latent_dim = int(latent_dim)
        self.site = site

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior mean and standard deviation for a batch ``x``."""
        loc, raw = self.net(x.reshape(x.shape[0], -1)).chunk(2, dim=-1)
        # the floor keeps log q finite when the encoder pushes a scale towards zero
        return loc, F.softplus(raw) + 1e-4

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        loc, scale = self.encode(x)
        with data_plate(x, num_data):
            return pyro.sample(self.site, dist.Normal(loc, scale).to_event(1))


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
