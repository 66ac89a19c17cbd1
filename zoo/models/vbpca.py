"""Bayesian PCA by variational Bayes (Bishop 1999, "Variational principal components").

The model, for ``N`` points ``t_n`` in ``R^d`` and ``q`` latent dimensions::

    x_n ~ N(0, I_q)                       (the latent point; ``z`` in the zoo's other models)
    t_n ~ N(W x_n + mu, tau^{-1} I_d)
    w_j ~ N(0, alpha_j^{-1} I_d)          (column j of W: the ARD prior)
    alpha_j ~ Gamma(a_alpha, b_alpha),  tau ~ Gamma(c_tau, d_tau),  mu ~ N(0, beta^{-1} I_d)

with broad hyperpriors, ``a = b = c = d = beta = 1e-3`` by default (b and d are rates).  The
posterior is approximated by ``q(X) q(W) q(alpha) q(mu) q(tau)``; each factor's optimum given the
others is closed form, and one *sweep* applies them in this order (``<.>`` is an expectation
under ``q``, ``w~_k`` the ``k``-th row of ``W``, ``M`` the ``d x q`` matrix of row means)::

    q(x_n)  = N(m_n, S_x),       S_x = (I + <tau> <W^T W>)^{-1},
                                 m_n = <tau> S_x M^T (t_n - <mu>)
    q(mu)   = N(m_mu, s_mu I),   s_mu = 1 / (beta + N <tau>),
                                 m_mu = <tau> s_mu sum_n (t_n - M m_n)
    q(w~_k) = N(M_k, S_w),       S_w = (diag<alpha> + <tau> sum_n <x_n x_n^T>)^{-1},
                                 M = <tau> (T - 1 m_mu^T)^T [m_1 .. m_N]^T S_w
    q(alpha_j) = Gamma(a_alpha + d/2, b_alpha + <||w_j||^2> / 2)
    q(tau)  = Gamma(c_tau + N d / 2, d_tau + <sum_n ||t_n - W x_n - mu||^2> / 2)

with ``<W^T W> = d S_w + M^T M``, ``<||w_j||^2> = ||M_j||^2 + d (S_w)_jj`` and
``<x_n x_n^T> = S_x + m_n m_n^T``.  Every update maximizes the lower bound::

    L = <ln p(T | X, W, mu, tau)> - KL(q(X) || p(X)) + <ln p(W | alpha)> + H[q(W)]
        - KL(q(alpha) || p(alpha)) - KL(q(mu) || p(mu)) - KL(q(tau) || p(tau))

over its own factor, so ``L`` never decreases: :func:`fit_vb` records it after every sweep and
raises if it ever falls by more than float64 round-off.  Unneeded columns of ``W`` are switched
off (``<alpha_j>`` grows, ``M_j -> 0``) within tens of sweeps, where the gradient-ARD entry
``bpca`` (:mod:`zoo.models.ppca`) needs hundreds of steps.

**Active dimensions**: column ``j`` is active when ``||M_j||^2 >= active_tol * max_i ||M_i||^2``,
the rule the ``bpca`` entry uses, so that the two are compared alike.

**Initialization** (data-dependent, so that scales are relative): ``<mu>`` is the data mean,
``<tau>`` the inverse mean feature variance ``v``, ``M`` has i.i.d. ``N(0, init_scale^2 v)``
entries, ``S_w = 0``, and ``q(alpha_j)`` has the shape of its update and the mean ``1 / v`` (a
column that explains the data's variance).

**The rotation** (``rotate=True``, the default; Luttinen & Ilin 2010, "Transformations in
variational Bayesian factor analysis to speed up learning", Neurocomputing 73).  Bishop's sweeps
alone move ``q(W)`` and ``q(X)`` along the rotations of the latent space only slowly, which keeps
surplus columns alive (measured on 3-of-8 data: 4-8 columns still active after 1000 sweeps).
:func:`rotate` maps ``W -> W R^{-1}``, ``x_n -> R x_n``, which leaves ``W x_n`` and so the
likelihood term unchanged, and picks ``R`` by L-BFGS to maximize the rest of ``L`` with
``q(alpha)`` re-optimized; ``R`` is kept only if it raises ``L``, so ``L`` still never
decreases.  It runs after a sweep that raised ``L`` by less than ``rotate_gate * |L|``
(``1e-3``): rotating from the very first sweeps, while the noise estimate is still large and a
tiny start has grown every column along the leading eigenvector, merges them into one column
and stops there (a local maximum of ``L``, measured from ``init_scale = 1e-3``).  With the gate,
every start measured (``init_scale`` ``1e-3`` to ``3``, three seeds each) switched off exactly
the 5 surplus columns by sweep 39 and converged by sweep 71 on the 3-of-8 test data, by sweep 52
and 83 on ``ppca-synthetic`` (``benchmarks/results/bpca``).

This module holds the mathematics: :func:`fit_vb` runs the sweeps to convergence on a data
tensor and returns a :class:`VBResult`.  :mod:`zoo.models.bpca` makes it the registry entry
``bpca-vb``, trained by :func:`zoo.fit` one sweep per step.

Usage::

    import zoo
    from zoo.models.vbpca import fit_vb
    data = zoo.load("digits")
    result = fit_vb(data.x_train, 20, seed=0)  # q = 20 allowed
    result.num_active, result.iterations, result.noise_variance
    z = result.project(data.x_test)            # means of q(x_n) for new points
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.distributions import Gamma, Normal, kl_divergence

from zoo.models.ppca import ppca_log_likelihood
from zoo.util import check_numbers

__all__ = [
    "MONOTONE_RTOL",
    "REFERENCE",
    "BPCAVBConfig",
    "VBResult",
    "VBState",
    "as_data",
    "check_monotone",
    "expected_residual",
    "fit_vb",
    "init_state",
    "iterate",
    "lower_bound",
    "rotate",
    "rotation_objective",
    "sweep",
    "update_alpha",
    "update_mu",
    "update_tau",
    "update_w",
    "update_z",
]

REFERENCE = (
    "Bishop (1999), Variational principal components, ICANN 99, IEE Conf. Publ. 470, 509-514"
)
LOG_2PI = math.log(2 * math.pi)
#: How far (relative to ``|L|``) the bound may fall in one sweep before it counts as a bug.
MONOTONE_RTOL = 1e-10


@dataclass(frozen=True)
class BPCAVBConfig:
    """Configuration of Bayesian PCA by VB (used by :func:`fit_vb` and the ``bpca-vb`` entry).

    :param latent_dim: ``q``, the most latent dimensions it may use; ``0`` means ``d - 1``
        (Bishop's choice, all that PCA can use).
    :param a_alpha: shape of the Gamma prior on each ``alpha_j``.
    :param b_alpha: its rate.
    :param c_tau: shape of the Gamma prior on the noise precision ``tau``.
    :param d_tau: its rate.
    :param beta: precision of the Gaussian prior on ``mu``.
    :param init_scale: standard deviation of ``M``'s initial entries, in units of the data's
        root-mean feature variance.
    :param active_tol: a column is active when ``||M_j||^2 >= active_tol * max_i ||M_i||^2``.
    :param max_iter: the most sweeps :func:`fit_vb` takes.
    :param tol: :func:`fit_vb` stops when one sweep raises ``L`` by less than ``tol * |L|``.
    :param rotate: follow each sweep by the rotation of Luttinen & Ilin (module docstring) when
        the sweep raised ``L`` by less than ``rotate_gate * |L|``.
    :param rotate_gate: see ``rotate``.
    """

    latent_dim: int = 0
    a_alpha: float = 1e-3
    b_alpha: float = 1e-3
    c_tau: float = 1e-3
    d_tau: float = 1e-3
    beta: float = 1e-3
    init_scale: float = 1.0
    active_tol: float = 1e-2
    max_iter: int = 1000
    tol: float = 1e-9
    rotate: bool = True
    rotate_gate: float = 1e-3

    def __post_init__(self) -> None:
        check_numbers(self)
        if self.latent_dim < 0:
            raise ValueError(f"latent_dim must be >= 0 (0: d - 1), got {self.latent_dim}")
        names = ("a_alpha", "b_alpha", "c_tau", "d_tau", "beta", "init_scale", "tol", "rotate_gate")
        for name in names:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.active_tol < 1:
            raise ValueError(f"active_tol must lie in (0, 1), got {self.active_tol}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")

    def dims(self, d: int) -> int:
        """``q`` for data of dimension ``d``, checked."""
        q = d - 1 if self.latent_dim == 0 else self.latent_dim
        if not 1 <= q < d:
            raise ValueError(f"latent_dim must lie in [1, {d - 1}] for d={d}, got {q}")
        return q


@dataclass
class VBState:
    """The variational factors, float64 (see the module docstring for the symbols).

    ``X`` (``N x q``, the means of ``q(x_n)``) and ``S_x`` belong to the data last swept.
    """

    M: torch.Tensor  # (d, q) row means of q(W)
    S_w: torch.Tensor  # (q, q) shared row covariance of q(W)
    m_mu: torch.Tensor  # (d,)
    s_mu: torch.Tensor  # () isotropic variance of q(mu)
    a_alpha: torch.Tensor  # () shape of every q(alpha_j)
    b_alpha: torch.Tensor  # (q,) rates
    a_tau: torch.Tensor  # ()
    b_tau: torch.Tensor  # ()
    X: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.float64))
    S_x: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.float64))

    @property
    def tau(self) -> torch.Tensor:
        return self.a_tau / self.b_tau

    @property
    def alpha(self) -> torch.Tensor:
        return self.a_alpha / self.b_alpha

    def wtw(self) -> torch.Tensor:
        """``<W^T W> = d S_w + M^T M``."""
        return self.M.shape[0] * self.S_w + self.M.T @ self.M

    def column_energy(self) -> torch.Tensor:
        """``||M_j||^2``, the squared norms of the columns of ``E_q[W]``."""
        return self.M.square().sum(0)

    def active(self, tol: float) -> torch.Tensor:
        energy = self.column_energy()
        return energy >= tol * energy.max()


def _eye(q: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(q, dtype=like.dtype, device=like.device)


def _inv_logdet(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    chol = torch.linalg.cholesky(A)
    return torch.cholesky_inverse(chol), 2 * chol.diagonal().log().sum()


def _second_moment_x(s: VBState) -> torch.Tensor:
    """``sum_n <x_n x_n^T> = N S_x + X^T X``."""
    return s.X.shape[0] * s.S_x + s.X.T @ s.X


def update_z(s: VBState, t: torch.Tensor) -> None:
    """``q(x_n)`` given the others (one ``q x q`` inverse for all points)."""
    q = s.M.shape[1]
    s.S_x = torch.linalg.inv(_eye(q, s.M) + s.tau * s.wtw())
    s.S_x = (s.S_x + s.S_x.T) / 2
    s.X = s.tau * (t - s.m_mu) @ s.M @ s.S_x


def update_mu(s: VBState, t: torch.Tensor, cfg: BPCAVBConfig) -> None:
    """``q(mu)`` given the others."""
    s.s_mu = 1 / (cfg.beta + t.shape[0] * s.tau)
    s.m_mu = s.tau * s.s_mu * (t - s.X @ s.M.T).sum(0)


def update_w(s: VBState, t: torch.Tensor) -> None:
    """``q(W)``: every row Gaussian with the shared covariance ``S_w``."""
    s.S_w = torch.linalg.inv(torch.diag(s.alpha) + s.tau * _second_moment_x(s))
    s.S_w = (s.S_w + s.S_w.T) / 2
    s.M = s.tau * (t - s.m_mu).T @ s.X @ s.S_w


def update_alpha(s: VBState, cfg: BPCAVBConfig) -> None:
    """``q(alpha_j) = Gamma(a + d/2, b + <||w_j||^2>/2)``."""
    d = s.M.shape[0]
    s.a_alpha = torch.as_tensor(cfg.a_alpha + d / 2, dtype=s.M.dtype)
    s.b_alpha = cfg.b_alpha + (s.column_energy() + d * s.S_w.diagonal()) / 2


def expected_residual(s: VBState, t: torch.Tensor) -> torch.Tensor:
    """``<sum_n ||t_n - W x_n - mu||^2>`` under ``q``: the plug-in residual plus the variances."""
    n, d = t.shape
    plug_in = (t - s.X @ s.M.T - s.m_mu).square().sum()
    sxx = _second_moment_x(s)
    extra = (s.wtw() * sxx).sum() - (s.M.T @ s.M * (s.X.T @ s.X)).sum()
    return plug_in + extra + n * d * s.s_mu


def update_tau(s: VBState, t: torch.Tensor, cfg: BPCAVBConfig) -> None:
    """``q(tau) = Gamma(c + N d / 2, d + <residual> / 2)``."""
    n, d = t.shape
    s.a_tau = torch.as_tensor(cfg.c_tau + n * d / 2, dtype=t.dtype)
    s.b_tau = cfg.d_tau + expected_residual(s, t) / 2


def rotation_objective(R: torch.Tensor, s: VBState, n: int, cfg: BPCAVBConfig) -> torch.Tensor:
    """The part of ``L`` that the rotation ``W -> W R^{-1}``, ``x_n -> R x_n`` changes, with
    ``q(alpha)`` at its optimum (derived here for this model, after Luttinen & Ilin 2010)::

        -tr(R A_x R^T) / 2 + (N - d) ln|det R| - (a + d/2) sum_j ln(b + [R^-T A_w R^-1]_jj / 2)

    with ``A_x = sum_n <x_n x_n^T>`` and ``A_w = <W^T W>``; the likelihood term is unchanged.
    """
    d = s.M.shape[0]
    a_x, a_w = _second_moment_x(s), s.wtw()
    r_inv = torch.linalg.inv(R)
    col = (r_inv * (a_w @ r_inv)).sum(0)  # diag(R^-T A_w R^-1)
    logdet = torch.linalg.slogdet(R)[1]
    ard = (cfg.a_alpha + d / 2) * torch.log(cfg.b_alpha + col / 2).sum()
    return -0.5 * (R @ a_x * R).sum() + (n - d) * logdet - ard


def rotate(s: VBState, n: int, cfg: BPCAVBConfig, max_iter: int = 30) -> None:
    """Move ``q(W)`` and ``q(X)`` along the directions that leave ``W x`` unchanged to the best
    rotation ``R`` (L-BFGS from ``R = I``), then update ``q(alpha)``: the parameter expansion of
    Luttinen & Ilin (2010).  Plain sweeps move along these directions only slowly, which is what
    keeps surplus columns alive; ``R`` is kept only if it raises the objective."""
    q = s.M.shape[1]
    eye = _eye(q, s.M)
    with torch.enable_grad():
        R = eye.clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [R], max_iter=max_iter, tolerance_change=1e-12, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = -rotation_objective(R, s, n, cfg)
            loss.backward()
            return loss

        opt.step(closure)
    R = R.detach()
    if not rotation_objective(R, s, n, cfg) > rotation_objective(eye, s, n, cfg):
        return
    r_inv = torch.linalg.inv(R)
    s.M = s.M @ r_inv
    s.S_w = r_inv.T @ s.S_w @ r_inv
    s.S_w = (s.S_w + s.S_w.T) / 2
    s.X = s.X @ R.T
    s.S_x = R @ s.S_x @ R.T
    s.S_x = (s.S_x + s.S_x.T) / 2
    update_alpha(s, cfg)


def sweep(s: VBState, t: torch.Tensor, cfg: BPCAVBConfig) -> None:
    """One coordinate-ascent sweep of Bishop's updates: ``q(X)``, ``q(mu)``, ``q(W)``,
    ``q(alpha)``, ``q(tau)``."""
    update_z(s, t)
    update_mu(s, t, cfg)
    update_w(s, t)
    update_alpha(s, cfg)
    update_tau(s, t, cfg)


def iterate(s: VBState, t: torch.Tensor, cfg: BPCAVBConfig, previous: float) -> float:
    """One iteration: a :func:`sweep`, then, if ``cfg.rotate`` and the sweep raised ``L`` above
    ``previous`` by less than ``cfg.rotate_gate * |L|``, the rotation :func:`rotate`.

    :returns: ``L`` at the end.
    """
    bound = lower_bound(s, t, cfg)
    if cfg.rotate and bound - previous < cfg.rotate_gate * abs(bound):
        rotate(s, t.shape[0], cfg)
        bound = lower_bound(s, t, cfg)
    return bound


def lower_bound(s: VBState, t: torch.Tensor, cfg: BPCAVBConfig) -> float:
    """The bound ``L`` (nats, whole data set) at the current factors; see the module docstring."""
    n, d = t.shape
    q = s.M.shape[1]
    e_ln_tau = torch.digamma(s.a_tau) - s.b_tau.log()
    e_ln_alpha = torch.digamma(s.a_alpha) - s.b_alpha.log()
    lik = 0.5 * n * d * (e_ln_tau - LOG_2PI) - 0.5 * s.tau * expected_residual(s, t)
    _, logdet_x = _inv_logdet(s.S_x)
    kl_x = 0.5 * (n * s.S_x.trace() + s.X.square().sum() - n * q - n * logdet_x)
    w_sq = s.column_energy() + d * s.S_w.diagonal()
    ln_p_w = (0.5 * d * (e_ln_alpha - LOG_2PI) - 0.5 * s.alpha * w_sq).sum()
    _, logdet_w = _inv_logdet(s.S_w)
    entropy_w = 0.5 * d * (q * (1 + LOG_2PI) + logdet_w)
    prior_alpha = Gamma(torch.tensor(cfg.a_alpha, dtype=t.dtype), cfg.b_alpha)
    kl_alpha = kl_divergence(Gamma(s.a_alpha, s.b_alpha), prior_alpha).sum()
    prior_tau = Gamma(torch.tensor(cfg.c_tau, dtype=t.dtype), cfg.d_tau)
    kl_tau = kl_divergence(Gamma(s.a_tau, s.b_tau), prior_tau)
    prior_mu = Normal(torch.zeros((), dtype=t.dtype), cfg.beta**-0.5)
    kl_mu = kl_divergence(Normal(s.m_mu, s.s_mu.sqrt()), prior_mu).sum()
    total = lik - kl_x + ln_p_w + entropy_w - kl_alpha - kl_tau - kl_mu
    return float(total)


def as_data(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``x`` as a float64 ``(N, d)`` matrix, checked: at least two finite rows of two features."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (N, ...) with N points, got {tuple(x.shape)}")
    t = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    if t.shape[0] < 2 or t.shape[1] < 2:
        raise ValueError(f"need at least 2 points of at least 2 features, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds non-finite values")
    if not t.var(0).sum() > 0:
        raise ValueError(f"{name} has no variance: every point is the same")
    return t


def init_state(
    t: torch.Tensor, q: int, cfg: BPCAVBConfig, noise: torch.Tensor | None = None
) -> VBState:
    """The data-dependent start (module docstring); ``noise`` is ``M``'s ``N(0, 1)`` draw."""
    d = t.shape[1]
    v = t.var(0, unbiased=False).mean()
    if noise is None:
        noise = torch.randn(d, q, dtype=t.dtype)
    f64 = {"dtype": t.dtype, "device": t.device}
    M = cfg.init_scale * v.sqrt() * noise.to(**f64)
    a_tau = torch.tensor(cfg.c_tau + t.numel() / 2, **f64)
    a_alpha = torch.tensor(cfg.a_alpha + d / 2, **f64)
    return VBState(
        M=M,
        S_w=torch.zeros(q, q, **f64),
        m_mu=t.mean(0),
        s_mu=torch.zeros((), **f64),
        a_alpha=a_alpha,
        b_alpha=a_alpha * v * torch.ones(q, **f64),
        a_tau=a_tau,
        b_tau=a_tau * v,
    )


@dataclass(frozen=True)
class VBResult:
    """What :func:`fit_vb` found (float64, on the data's device).

    :ivar W_mean: ``E_q[W]`` ``(d, q)``.
    :ivar W_row_cov: the covariance ``S_w`` ``(q, q)`` shared by every row of ``W``.
    :ivar alpha_mean: ``E_q[alpha]`` ``(q,)``.
    :ivar tau_mean: ``E_q[tau]``; ``noise_variance`` is its inverse.
    :ivar mu_mean: ``E_q[mu]`` ``(d,)``; ``mu_var`` the variance of each coordinate.
    :ivar z_mean: the means of ``q(x_n)`` ``(N, q)`` at the last iteration; ``z_cov`` their
        shared covariance (:meth:`project` gives ``q(x_n)``'s update for any points).
    :ivar bounds: ``L`` after every sweep (never decreasing).
    :ivar active: the active columns (module docstring's rule); ``active_since`` the first
        sweep after which the active set stayed what it ended as.
    :ivar converged: whether the last sweep raised ``L`` by less than ``tol * |L|``.
    """

    W_mean: torch.Tensor
    W_row_cov: torch.Tensor
    alpha_mean: torch.Tensor
    tau_mean: float
    mu_mean: torch.Tensor
    mu_var: float
    z_mean: torch.Tensor
    z_cov: torch.Tensor
    bounds: list[float]
    active: torch.Tensor
    active_since: int
    converged: bool
    seconds: float
    state: VBState

    @property
    def iterations(self) -> int:
        return len(self.bounds)

    @property
    def num_active(self) -> int:
        return int(self.active.sum())

    @property
    def noise_variance(self) -> float:
        return 1.0 / self.tau_mean

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Means of ``q(x_n)`` for points ``x`` (new or not): its update given the fitted
        global factors, ``(B, q)``."""
        s = dataclasses.replace(self.state)
        update_z(s, as_data(x))
        return s.X

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """Plug-in ``log N(x_n; E[mu], E[W] E[W]^T + I / E[tau])`` per point (float64)."""
        return ppca_log_likelihood(x, self.W_mean, self.mu_mean, self.noise_variance)


def check_monotone(bounds: list[float]) -> None:
    """Raise if the last bound fell below the one before by more than round-off."""
    if len(bounds) >= 2 and bounds[-1] < bounds[-2] - MONOTONE_RTOL * abs(bounds[-2]):
        raise RuntimeError(
            f"the variational bound decreased at sweep {len(bounds)}: {bounds[-2]!r} -> "
            f"{bounds[-1]!r} (each update is a coordinate maximum: this is a bug)"
        )


def fit_vb(
    x: torch.Tensor,
    latent_dim: int | None = None,
    *,
    config: BPCAVBConfig | None = None,
    seed: int | None = None,
    **overrides: Any,
) -> VBResult:
    """Bayesian PCA by variational Bayes: sweeps until ``L`` rises by less than ``tol * |L|``.

    :param x: data ``(N, ...)``, flattened to ``(N, d)`` and computed on in float64.
    :param latent_dim: ``q``; the config's (``d - 1`` by default) when omitted.
    :param config: a :class:`BPCAVBConfig`; the defaults when omitted.
    :param seed: seeds the draw of ``M``'s start (a local generator: global RNG untouched).
    :param overrides: :class:`BPCAVBConfig` fields replacing those of ``config``.
    :raises ValueError: for data that are not a finite ``(N, d)`` tensor with ``N, d >= 2`` and
        some variance, ``latent_dim`` outside ``[1, d - 1]``, or a bad setting.
    :raises RuntimeError: if the bound ever decreases (it cannot, save for a bug).
    """
    cfg = config if config is not None else BPCAVBConfig()
    if latent_dim is not None:
        overrides = {**overrides, "latent_dim": latent_dim}
    cfg = dataclasses.replace(cfg, **overrides)
    t = as_data(x)
    q = cfg.dims(t.shape[1])
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    noise = torch.randn(t.shape[1], q, generator=gen, dtype=torch.float64)
    start = time.perf_counter()
    s = init_state(t, q, cfg, noise)
    bounds: list[float] = []
    masks: list[torch.Tensor] = []
    converged = False
    for _ in range(cfg.max_iter):
        sweep(s, t, cfg)
        bounds.append(iterate(s, t, cfg, bounds[-1] if bounds else -math.inf))
        check_monotone(bounds)
        masks.append(s.active(cfg.active_tol))
        if len(bounds) >= 2 and bounds[-1] - bounds[-2] < cfg.tol * abs(bounds[-1]):
            converged = True
            break
    since = len(masks)
    while since > 1 and torch.equal(masks[since - 2], masks[-1]):
        since -= 1
    return VBResult(
        W_mean=s.M,
        W_row_cov=s.S_w,
        alpha_mean=s.alpha,
        tau_mean=float(s.tau),
        mu_mean=s.m_mu,
        mu_var=float(s.s_mu),
        z_mean=s.X,
        z_cov=s.S_x,
        bounds=bounds,
        active=masks[-1],
        active_since=since,
        converged=converged,
        seconds=time.perf_counter() - start,
        state=s,
    )
