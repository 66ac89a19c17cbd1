"""The hand-written references of :mod:`benchmarks.overhead`: each model's ``-ELBO`` written
from its formulas in plain PyTorch (no Pyro), with the zoo's architecture and initial parameters.

Each reference is a module built from a :class:`~zoo.spec.ZooModel` (it copies the zoo's initial
parameters) with a ``neg_elbo(x, y, num_data)`` method; ``tests/benchmarks/
test_benchmarks_overhead.py`` checks it equals the zoo's ``-ELBO`` for the same parameters and
noise.

Usage::

    ref = SparseVDNet(zm)                                # zm: a lenet300-loguniform entry
    loss = ref.neg_elbo(x, y, num_data=60000)
    loss.backward()
"""

from __future__ import annotations

import copy
import itertools
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models.bnn import build_net
from zoo.priors import LOG_ALPHA_EPS, sparse_vd_kl
from zoo.spec import ZooModel

__all__ = [
    "LOG_ALPHA_CLIP",
    "LOG_SIGMA2_MIN",
    "PPCA",
    "VAE",
    "VAR_EPS",
    "HardAttention",
    "SparseVDNet",
    "normal_logpdf",
]

#: LeNet's KL clips log alpha to [-8, 8] and floors log sigma^2 at -30 (zoo.priors, guides).
LOG_ALPHA_CLIP, LOG_SIGMA2_MIN, VAR_EPS = (-8.0, 8.0), -30.0, 1e-8
_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------
# Sparse VD (Molchanov et al. 2017, eq. 14 and sec. 4.2) with the LRT (Kingma et al. 2015)


class SparseVDNet(nn.Module):
    """The architecture of ``build_net`` with every Linear/Conv2d replaced by its LRT form:
    ``b = x W^T + bias + sqrt(x^2 sigma^2 + 1e-8) eps``, ``sigma^2 = exp(max(log sigma^2, -30))``.
    """

    def __init__(self, zm: ZooModel) -> None:
        super().__init__()
        self.net = build_net(zm.config, zm.info)
        layers = [m for m in self.net.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        state = zm.model.net.state_dict()
        self.theta = nn.ParameterList()
        self.log_sigma2 = nn.ParameterList()
        self.bias = nn.ParameterList()
        for i, (m, site) in enumerate(zip(layers, zm.guide.sites, strict=True)):
            self.theta.append(nn.Parameter(site.theta.detach().clone()))
            self.log_sigma2.append(nn.Parameter(site.log_sigma2.detach().clone()))
            prefix = site.site.removeprefix("net.").removesuffix(".weight")
            self.bias.append(nn.Parameter(state[prefix + ".bias"].detach().clone()))
            m.forward = partial(self._lrt, i, m)  # this private copy is never used plainly
            del m.weight, m.bias

    def _lrt(self, i: int, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        var_w = self.log_sigma2[i].clamp(min=LOG_SIGMA2_MIN).exp()
        if isinstance(m, nn.Linear):
            mean = F.linear(x, self.theta[i], self.bias[i])
            var = F.linear(x * x, var_w)
        else:
            mean = F.conv2d(x, self.theta[i], self.bias[i], m.stride, m.padding)
            var = F.conv2d(x * x, var_w, None, m.stride, m.padding)
        return mean + (var + VAR_EPS).sqrt() * torch.randn_like(mean)

    def kl(self) -> torch.Tensor:
        total = 0.0
        for t, s in zip(self.theta, self.log_sigma2, strict=True):
            log_alpha = s.clamp(min=LOG_SIGMA2_MIN) - (t * t + LOG_ALPHA_EPS).log()
            total = total + sparse_vd_kl(log_alpha.clamp(*LOG_ALPHA_CLIP)).sum()
        return total

    def neg_elbo(self, x: torch.Tensor, y: torch.Tensor, num_data: int) -> torch.Tensor:
        nll = F.cross_entropy(self.net(x), y, reduction="sum")
        return num_data / x.shape[0] * nll + self.kl()


# ---------------------------------------------------------------------------------------------
# VAE (Kingma & Welling 2014): Bernoulli decoder, Gaussian encoder, one reparameterized sample


def normal_logpdf(
    z: torch.Tensor, loc: torch.Tensor | float, scale: torch.Tensor | float
) -> torch.Tensor:
    """Elementwise ``log N(z; loc, scale^2)``.

    Usage::

        normal_logpdf(torch.zeros(3), 0.0, 1.0)      # -0.9189... each
    """
    return -0.5 * ((z - loc) / scale) ** 2 - torch.log(torch.as_tensor(scale)) - 0.5 * _LOG_2PI


class VAE(nn.Module):
    """``q(z|x) = N(mu(x), (softplus(r(x)) + floor)^2)``, ``p(z) = N(0, I)``,
    ``p(x|z) = Bernoulli(logits = f(z))``; ``-ELBO = -(N/B) sum_i [log p(x_i|z_i) + log p(z_i)
    - log q(z_i|x_i)]`` with ``z_i = mu + sigma eps``."""

    def __init__(self, zm: ZooModel) -> None:
        super().__init__()
        cfg = zm.config
        if (cfg.arch, cfg.activation, cfg.likelihood, cfg.estimator) != (
            "mlp",
            "relu",
            "bernoulli",
            "reparam",
        ):
            raise ValueError("the reference is the MLP, ReLU, Bernoulli, reparameterized VAE")
        d, k, hidden = zm.model.input_dim, cfg.latent_dim, cfg.hidden

        def mlp(widths: list[int]) -> nn.Sequential:
            layers: list[nn.Module] = []
            for a, b in itertools.pairwise(widths):
                layers += [nn.Linear(a, b), nn.ReLU()]
            return nn.Sequential(*layers[:-1])

        self.min_scale = zm.guide.min_scale  # the encoder's floor (encoder_min_scale)
        self.encoder = mlp([d, *hidden, 2 * k])
        self.decoder = mlp([k, *reversed(hidden), d])
        # the zoo's initial parameters (same layer layout: Linear, ReLU, ..., Linear)
        self.encoder.load_state_dict(zm.guide.net.state_dict())
        self.decoder.load_state_dict(zm.model.decoder.state_dict())

    def neg_elbo(self, x: torch.Tensor, y: torch.Tensor | None, num_data: int) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        loc, raw = self.encoder(flat).chunk(2, dim=-1)
        scale = F.softplus(raw) + self.min_scale
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        log_lik = -F.binary_cross_entropy_with_logits(logits, flat, reduction="sum")
        log_prior = normal_logpdf(z, 0.0, 1.0).sum()
        log_q = normal_logpdf(z, loc, scale).sum()
        return -num_data / x.shape[0] * (log_lik + log_prior - log_q)


# ---------------------------------------------------------------------------------------------
# PPCA (Tipping & Bishop 1999): x = W z + mu + sigma e; the guide is the exact p(z | x)


class PPCA(nn.Module):
    """``M = W^T W + sigma^2 I``, ``q(z|x) = N(M^-1 W^T (x - mu), sigma^2 M^-1)``;
    ``-ELBO = -(N/B) sum_i [log N(x_i; W z_i + mu, sigma^2 I) + log N(z_i; 0, I)
    - log q(z_i | x_i)]``, ``z_i = m_i + L eps_i`` with ``L L^T = sigma^2 M^-1``."""

    def __init__(self, zm: ZooModel) -> None:
        super().__init__()
        self.W = nn.Parameter(zm.model.W.detach().clone())
        self.mu = nn.Parameter(zm.model.mu.detach().clone())
        # Pyro's positive constraint is exp of an unconstrained value
        self.log_sigma = nn.Parameter(zm.model.sigma.detach().log().clone())

    def neg_elbo(self, x: torch.Tensor, y: torch.Tensor | None, num_data: int) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        d, k = self.W.shape
        sigma = self.log_sigma.exp()
        M = self.W.T @ self.W + sigma**2 * torch.eye(k, dtype=x.dtype, device=x.device)
        M_inv = torch.cholesky_inverse(torch.linalg.cholesky(M))
        loc = (x - self.mu) @ self.W @ M_inv
        L = sigma * torch.linalg.cholesky(M_inv)
        eps = torch.randn_like(loc)
        z = loc + eps @ L.T
        resid = x - z @ self.W.T - self.mu
        log_lik = -0.5 * (resid / sigma).square().sum(-1) - d * (sigma.log() + 0.5 * _LOG_2PI)
        log_prior = -0.5 * z.square().sum(-1) - 0.5 * k * _LOG_2PI
        # log q(z|x): z - loc = L eps, so the quadratic form is |eps|^2
        log_q = -0.5 * eps.square().sum(-1) - L.diagonal().log().sum() - 0.5 * k * _LOG_2PI
        return -num_data / x.shape[0] * (log_lik + log_prior - log_q).sum()


# ---------------------------------------------------------------------------------------------
# Hard attention, the tile enumerated (Xu et al. 2015's hard attention, summed exactly)


class HardAttention(nn.Module):
    """``h_k = f(tile_k)``, ``p(s | x) = softmax_k a(h_k)``, ``p(y | x, s) = softmax(W h_s + c)``;
    ``-ELBO = -(N/B) sum_i log sum_k p(s = k | x_i) p(y_i | x_i, s = k)``, the marginal
    likelihood that ``TraceEnum_ELBO`` computes by enumerating ``s``."""

    def __init__(self, zm: ZooModel) -> None:
        super().__init__()
        model = zm.model
        self.grid = model.grid
        # plain copies of the zoo's sub-networks, with its initial parameters
        self.encoder = copy.deepcopy(model.encoder)
        self.attention = copy.deepcopy(model.attention)
        self.classifier = copy.deepcopy(model.classifier)

    def neg_elbo(self, x: torch.Tensor, y: torch.Tensor, num_data: int) -> torch.Tensor:
        b, _, side, _ = x.shape
        t = side // self.grid
        tiles = x.reshape(b, self.grid, t, self.grid, t).permute(0, 1, 3, 2, 4)
        h = self.encoder(tiles.reshape(b, self.grid**2, t * t))  # (B, K, F)
        log_att = self.attention(h).squeeze(-1).log_softmax(-1)  # (B, K)
        log_lik = self.classifier(h).log_softmax(-1)  # (B, K, C)
        log_lik = log_lik.gather(-1, y[:, None, None].expand(-1, h.shape[1], 1)).squeeze(-1)
        return -num_data / b * (log_att + log_lik).logsumexp(-1).sum()
