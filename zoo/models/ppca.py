"""Probabilistic PCA (Tipping & Bishop, 1999) and Bayesian PCA with ARD (Bishop, 1999).

The generative process, for each example ``n``::

    z_n ~ N(0, I_k)
    x_n ~ N(W z_n + mu, sigma^2 I_d)

so that ``x_n ~ N(mu, C)`` with ``C = W W^T + sigma^2 I_d``.

* **PPCA** (ML-II): ``W``, ``mu`` and ``sigma`` are point estimates that SVI fits by maximizing
  the ELBO.  With the exact posterior guide the ELBO *is* the log-likelihood, so SVI converges to
  the closed-form solution :func:`ppca_closed_form`.
* **Bayesian PCA**: ``W``'s columns get an ARD prior ``w_j ~ N(0, alpha_j^{-1} I_d)`` whose
  precisions ``alpha_j`` are fitted by (variational) type-II maximum likelihood.  Unneeded
  columns are driven to zero (``alpha_j -> inf``), which selects the latent dimensionality.
  Given ``q(W)``, the ELBO is maximized by ``alpha_j = d / E_q ||w_j||^2`` (Bishop 1999, eq. 9);
  :func:`update_ard` applies this after every gradient step.  A gradient step on ``alpha``
  instead stalls: while ``q(w_j)`` still equals the prior, ``d ELBO / d log alpha_j = 0``.

Usage::

    from zoo import create_model, fit, load
    data = load("digits")
    zm = create_model("ppca", data=data, latent_dim=2)
    fit(zm, data, num_epochs=100)
    z = zm.model.project(data.x_test)          # posterior means E[z | x]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam, PyroSample

from guides.amortized import AmortizedNormal, AnalyticPosterior
from guides.meanfield import MeanFieldNormal
from zoo.data import DataInfo
from zoo.models.plots import LazyPlot
from zoo.plates import check_input, data_plate
from zoo.spec import Hooks, ModelSpec, PointwiseDraws, ZooModel
from zoo.util import check_numbers

REFERENCE = (
    "Tipping & Bishop (1999), Probabilistic principal component analysis, JRSS-B 61(3); "
    "Bishop (1999), Bayesian PCA, NIPS 11"
)


@dataclass(frozen=True)
class PPCAConfig:
    """Configuration of the PPCA family.

    :param latent_dim: ``k``, the number of latent dimensions (for ``ard``, the most it may use).
    :param ard: put the ARD prior on ``W``'s columns (Bayesian PCA).
    :param init_scale: standard deviation of the initial entries of ``W`` (for ``ard``, of the
        initial means of ``q(W)``).
    :param init_noise: initial noise standard deviation ``sigma``.
    :param encoder_hidden: hidden widths of the amortized guide's encoder (empty: affine).
    :param active_tol: a column of ``W`` counts as active when its squared norm is at least this
        fraction of the largest one.
    """

    latent_dim: int = 2
    ard: bool = False
    init_scale: float = 0.1
    init_noise: float = 1.0
    encoder_hidden: tuple[int, ...] = ()
    active_tol: float = 1e-2

    def __post_init__(self) -> None:
        check_numbers(self)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.init_scale <= 0 or self.init_noise <= 0:
            raise ValueError("init_scale and init_noise must be positive")
        if not 0 < self.active_tol < 1:
            raise ValueError(f"active_tol must lie in (0, 1), got {self.active_tol}")


class PPCA(PyroModule):
    """The PPCA generative model; with ``ard=True`` Bayesian PCA.

    :param input_shape: shape of one example; it is flattened to ``d`` features.
    :param latent_dim: ``k``.
    :param ard: sample ``W`` from the ARD prior instead of fitting it as a parameter.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        latent_dim: int,
        *,
        ard: bool = False,
        init_scale: float = 0.1,
        init_noise: float = 1.0,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.input_dim = math.prod(self.input_shape)
        self.latent_dim = int(latent_dim)
        if self.latent_dim >= self.input_dim:
            raise ValueError(
                f"latent_dim={latent_dim} must be smaller than the data dimension {self.input_dim}"
            )
        self.ard = ard
        self.mu = PyroParam(torch.zeros(self.input_dim))
        self.sigma = PyroParam(torch.tensor(float(init_noise)), constraint=constraints.positive)
        if ard:
            # a buffer, not a parameter: update_ard sets it in closed form
            self.register_buffer("alpha", torch.ones(self.latent_dim))
            self.W = PyroSample(
                lambda m: (
                    dist.Normal(0.0, m.alpha.rsqrt())
                    .expand([m.input_dim, m.latent_dim])
                    .to_event(2)
                )
            )
        else:
            self.W = PyroParam(torch.randn(self.input_dim, self.latent_dim) * init_scale)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_shape, type(self).__name__)
        return x.reshape(x.shape[0], self.input_dim)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        x = self._flat(x)
        W = self.W  # one draw per call under ARD: W is global
        with data_plate(x, num_data):
            z = pyro.sample(
                "z", dist.Normal(x.new_zeros(()), 1.0).expand([self.latent_dim]).to_event(1)
            )
            # W may carry a particle dimension: (P, 1, d, k) @ (P, B, k, 1) -> (P, B, d, 1)
            loc = (W @ z.unsqueeze(-1)).squeeze(-1) + self.mu
            return pyro.sample("x", dist.Normal(loc, self.sigma).to_event(1), obs=x)

    def _weights(self, W: torch.Tensor | None) -> torch.Tensor:
        if W is not None:
            return W
        if self.ard:
            raise ValueError("Bayesian PCA samples W: pass W explicitly (e.g. the guide's mean)")
        return self.W

    def local_posterior(
        self, x: torch.Tensor, W: torch.Tensor | None = None
    ) -> dist.MultivariateNormal:
        """The exact ``p(z | x, W, mu, sigma)`` (Tipping & Bishop 1999, eq. 6-7).

        ``z | x ~ N(M^{-1} W^T (x - mu), sigma^2 M^{-1})`` with ``M = W^T W + sigma^2 I_k``.
        Only ``k x k`` matrices are factorized, so the cost is linear in ``d``.
        """
        x = self._flat(x)
        W = self._weights(W)
        s2 = self.sigma.square()
        eye = torch.eye(self.latent_dim, dtype=x.dtype, device=x.device)
        M = W.transpose(-1, -2) @ W + s2 * eye
        M_inv = torch.cholesky_inverse(torch.linalg.cholesky(M))
        proj = ((x - self.mu).unsqueeze(-2) @ W).squeeze(-2)  # (..., B, k)
        loc = (proj.unsqueeze(-2) @ M_inv).squeeze(-2)
        scale_tril = self.sigma * torch.linalg.cholesky(M_inv)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)

    def marginal(self, W: torch.Tensor | None = None) -> dist.LowRankMultivariateNormal:
        """``p(x) = N(mu, W W^T + sigma^2 I)``; the low-rank form keeps it O(d k^2)."""
        W = self._weights(W)
        diag = self.sigma.square().expand(self.input_dim)
        return dist.LowRankMultivariateNormal(self.mu, cov_factor=W, cov_diag=diag)

    def log_likelihood(self, x: torch.Tensor, W: torch.Tensor | None = None) -> torch.Tensor:
        """Exact per-example ``log p(x_n)``, shape ``(B,)``."""
        return self.marginal(W).log_prob(self._flat(x))

    def project(self, x: torch.Tensor, W: torch.Tensor | None = None) -> torch.Tensor:
        """Latent projections ``E[z | x]``, shape ``(B, k)``."""
        return self.local_posterior(x, W).mean

    def reconstruct(self, x: torch.Tensor, W: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstructions ``W E[z | x] + mu``, in the input's shape."""
        W = self._weights(W)
        rec = self.project(x, W) @ W.transpose(-1, -2) + self.mu
        return rec.reshape(x.shape)


@dataclass(frozen=True)
class PPCASolution:
    """The closed-form maximum-likelihood PPCA fit (see :func:`ppca_closed_form`)."""

    W: torch.Tensor
    mu: torch.Tensor
    sigma2: torch.Tensor
    eigenvalues: torch.Tensor

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Exact per-example ``log p(x_n)`` under this solution (float64)."""
        return ppca_log_likelihood(x, self.W, self.mu, self.sigma2)


def _flat64(x: torch.Tensor) -> torch.Tensor:
    if x.dim() < 2:
        raise ValueError(f"x must have shape (N, ...), got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1).to(torch.float64)


def ppca_closed_form(x: torch.Tensor, latent_dim: int) -> PPCASolution:
    """The maximum-likelihood PPCA solution (Tipping & Bishop 1999, eq. 7-8), in float64.

    ``mu`` is the sample mean, ``sigma^2`` the mean of the ``d - k`` smallest eigenvalues of the
    sample covariance ``S`` (normalized by ``N``), and ``W = U_k (L_k - sigma^2 I)^{1/2}`` with
    the rotation ``R = I``.

    :param x: data of shape ``(N, ...)``, flattened to ``(N, d)``.
    :param latent_dim: ``k < d``.
    """
    x = _flat64(x)
    n, d = x.shape
    if not 1 <= latent_dim < d:
        raise ValueError(f"latent_dim must lie in [1, {d - 1}], got {latent_dim}")
    if n < 2:
        raise ValueError("need at least two examples")
    mu = x.mean(0)
    centered = x - mu
    S = centered.T @ centered / n
    evals, evecs = torch.linalg.eigh(S)
    evals, evecs = evals.flip(0), evecs.flip(1)  # descending
    sigma2 = evals[latent_dim:].mean()
    W = evecs[:, :latent_dim] * (evals[:latent_dim] - sigma2).clamp_min(0).sqrt()
    return PPCASolution(W=W, mu=mu, sigma2=sigma2, eigenvalues=evals)


def ppca_log_likelihood(
    x: torch.Tensor, W: torch.Tensor, mu: torch.Tensor, sigma2: torch.Tensor | float
) -> torch.Tensor:
    """Per-example ``log N(x_n; mu, W W^T + sigma^2 I)`` in float64, shape ``(N,)``."""
    x = _flat64(x)
    W, mu = W.to(torch.float64), mu.to(torch.float64)
    diag = torch.as_tensor(sigma2, dtype=torch.float64, device=x.device).expand(x.shape[1])
    return dist.LowRankMultivariateNormal(mu, cov_factor=W, cov_diag=diag).log_prob(x)


# ---------------------------------------------------------------------------------------------
# registry glue: builders, guides, metrics and plots


def _build(config: PPCAConfig, info: DataInfo) -> PPCA:
    return PPCA(
        info.input_shape,
        config.latent_dim,
        ard=config.ard,
        init_scale=config.init_scale,
        init_noise=config.init_noise,
    )


def _analytic_guide(config: PPCAConfig, info: DataInfo, model: PPCA) -> AnalyticPosterior:
    globals_ = ()
    if model.ard:
        globals_ = (
            MeanFieldNormal(
                "W", (model.input_dim, model.latent_dim), init_loc_std=config.init_scale
            ),
        )
    return AnalyticPosterior(model, globals_)


def _amortized_guide(config: PPCAConfig, info: DataInfo, model: PPCA) -> torch.nn.Module:
    if model.ard:
        raise ValueError(
            "the amortized guide covers z only; Bayesian PCA (ard=True) needs a guide for W "
            "too: use guide='analytic'"
        )
    return AmortizedNormal(model.input_dim, model.latent_dim, hidden=config.encoder_hidden)


def posterior_weights(zm: ZooModel) -> torch.Tensor:
    """``W`` itself for PPCA, the posterior mean ``E_q[W]`` for Bayesian PCA."""
    model: PPCA = zm.model
    if not model.ard:
        return model.W
    return zm.guide.global_guides[0].loc


def active_dimensions(zm: ZooModel) -> torch.Tensor:
    """A boolean mask of the latent dimensions in use (column energy >= ``active_tol`` x max)."""
    energy = posterior_weights(zm).square().sum(0)
    return energy >= zm.config.active_tol * energy.max()


def update_ard(zm: ZooModel) -> None:
    """The closed-form M-step ``alpha_j = d / E_q ||w_j||^2`` (Bishop 1999, eq. 9)."""
    q = zm.guide.global_guides[0]
    second_moment = q.loc.square().sum(0) + q.scale.square().sum(0)
    # the clamp keeps a fully pruned column's prior scale representable in float32
    zm.model.alpha.copy_((zm.model.input_dim / second_moment).clamp(1e-8, 1e12))


@torch.no_grad()
def pointwise_log_likelihood(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    num_samples: int,
    batch_size: int | None = None,
    samples: dict[str, torch.Tensor] | None = None,
) -> PointwiseDraws:
    """The exact marginal ``log p(x_i | W_s, mu, sigma) = log N(x_i; mu, W_s W_s^T + sigma^2 I)``.

    ``z`` is integrated out in closed form (Tipping & Bishop 1999), so only the global ``W`` is
    drawn: from ``q(W)`` for Bayesian PCA, while PPCA's ``W`` is a point estimate and every
    draw is the same.  ``y`` is ignored (the model is unsupervised).

    :param samples: draws of ``W`` to score instead, ``{"W": (S, d, k)}``.
    :returns: ``log_lik`` ``(S, N)``; the posterior group holds ``sigma`` and, for Bayesian PCA,
        the column norms ``||w_j||`` per draw (dim ``latent``).
    """
    model: PPCA = zm.model
    batch_size = 4096 if batch_size is None else batch_size
    if samples is not None:
        Ws = samples["W"]
    elif model.ard:
        q = zm.guide.global_guides[0].distribution()
        Ws = q.sample((num_samples,))
    else:
        Ws = model.W.detach().expand(num_samples, *model.W.shape)
    flat = model._flat(x)
    rows = []
    for W in Ws:
        marginal = model.marginal(W)
        parts = [marginal.log_prob(xb) for xb in flat.split(batch_size)]
        rows.append(torch.cat(parts).double())
    num = Ws.shape[0]
    posterior = {"sigma": model.sigma.detach().double().cpu().expand(num).clone()}
    dims = {}
    if model.ard:
        posterior["column_norm"] = Ws.double().norm(dim=-2).cpu()
        dims["column_norm"] = ("latent", [str(j) for j in range(model.latent_dim)])
    return PointwiseDraws(log_lik=torch.stack(rows).cpu(), posterior=posterior, dims=dims)


def metrics(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, float]:
    """Per-example exact log-likelihood (plug-in ``E_q[W]`` for Bayesian PCA) and reconstruction
    error on ``x``; for Bayesian PCA also the number of active dimensions."""
    model: PPCA = zm.model
    W = posterior_weights(zm)
    out = {
        "log_lik": model.log_likelihood(x, W).mean().item(),
        "recon_mse": (model.reconstruct(x, W) - x).square().mean().item(),
        "noise_std": model.sigma.item(),
    }
    if model.ard:
        out["active_dims"] = int(active_dimensions(zm).sum())
    return out


_GUIDES = {"analytic": _analytic_guide, "amortized": _amortized_guide}
_TRAIN = {
    "num_epochs": 100,
    "batch_size": 256,
    "lr": 0.1,
    "lr_schedule": "linear",
    "lr_decay_start": 0.5,
}

# What the two entries share; they differ in config, guides and the ARD update.
_FAMILY = {
    "family": "ppca",
    "build_model": _build,
    "default_guide": "analytic",
    "elbo": "trace",
    "dataset": "digits",
    "train_defaults": _TRAIN,
    "reference": REFERENCE,
    "observes": "x",
}
_HOOKS = Hooks(
    metrics=metrics, plot=LazyPlot("zoo.models.plots.ppca"), log_likelihood=pointwise_log_likelihood
)

#: The family's registry entries, collected by :mod:`zoo.registry`.
SPECS = (
    ModelSpec(
        name="ppca",
        description="Probabilistic PCA, ML-II by SVI (exact posterior guide: ELBO = log-lik)",
        config=PPCAConfig(latent_dim=2),
        guides=_GUIDES,
        hooks=_HOOKS,
        **_FAMILY,
    ),
    ModelSpec(
        name="bpca",
        description="Bayesian PCA: ARD prior on W's columns prunes unneeded latent dimensions",
        # A small start lets every column grow alike and share the signal, a saddle that ARD leaves
        # slowly; a unit-scale random start breaks the symmetry (measured: 3 of 8 dimensions kept
        # after ~250 steps on ppca-synthetic, against 4 after 600 steps from init_scale=0.1).
        config=PPCAConfig(latent_dim=10, ard=True, init_scale=1.0),
        guides={"analytic": _analytic_guide},
        hooks=dataclasses.replace(_HOOKS, post_step=update_ard),
        **_FAMILY,
    ),
)
