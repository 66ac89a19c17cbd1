"""The registry entry ``bpca-vb``: Bayesian PCA by variational Bayes (Bishop 1999), trained by
:func:`zoo.fit` and ``zoo train`` one closed-form sweep per step.

The mathematics (model, updates, bound, the rotation) is in :mod:`zoo.models.vbpca`, whose
:func:`~zoo.models.vbpca.fit_vb` runs the sweeps to convergence on a tensor.  Here the same model
is a ``PyroModule`` (:class:`BayesianPCA`, sites ``mu``, ``alpha``, ``W``, ``tau``, ``z`` and
the observed ``x``) and the global factors live in its guide (:class:`VBPosterior`), as
parameters without gradients; ``q(z_n)`` is computed from them in closed form.

**Why through the trainer, and how.**  The entry's ``closed_form_step`` hook
(:class:`zoo.spec.Hooks`) replaces the gradient step: each step of :func:`zoo.fit` is one sweep
over the whole training set (:func:`vb_step`), its loss ``-L`` (the history shows ``-L / N``).
A separate ``fit_vb`` loop behind the CLI would have needed its own checkpoints, resuming, run
folders, metrics and plots; hosted by the trainer, the entry gets all of them unchanged, and
the guide stays an ordinary Pyro guide of the model (Pyro's Monte Carlo ELBO of the pair
estimates ``L``, a test checks it).  What the trainer cannot give is a stopping rule: the entry
runs ``num_epochs`` sweeps (100 by default; with ``q = 10`` on digits ``L`` converges in 56,
see ``docs/ppca.md``), where :func:`~zoo.models.vbpca.fit_vb` stops at ``tol``.  A sweep over a
minibatch is not coordinate ascent, so the entry refuses ``batch_size < N``.

Usage::

    import zoo
    data = zoo.load("digits")
    zm = zoo.create_model("bpca-vb", data=data, seed=0)   # q = 10 allowed, as for ``bpca``
    result = zoo.fit(zm, data, num_epochs=60)             # 60 sweeps, full batch
    zm.evaluate(data)        # log_lik, recon_mse, noise_std, active_dims, sweeps

or ``zoo train bpca-vb --num-epochs 60`` from the shell.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from zoo.data import DataInfo
from zoo.models.plots import LazyPlot
from zoo.models.ppca import ppca_log_likelihood
from zoo.models.vbpca import (
    REFERENCE,
    BPCAVBConfig,
    VBState,
    as_data,
    check_monotone,
    fit_vb,
    init_state,
    iterate,
    sweep,
    update_z,
)
from zoo.plates import check_input, data_plate
from zoo.spec import Hooks, ModelSpec, PointwiseDraws, ZooModel

__all__ = [
    "SPECS",
    "BPCAVBConfig",
    "BayesianPCA",
    "VBPosterior",
    "active_dimensions",
    "elbo_for",
    "fit_vb",
    "metrics",
    "pointwise_log_likelihood",
    "vb_step",
]


class BayesianPCA(PyroModule):
    """Bishop's generative model (module docstring) with sites ``mu``, ``alpha``, ``W``, ``tau``
    and, per point, ``z`` (the ``x_n`` above) and the observed ``x``.

    :param input_shape: shape of one example; it is flattened to ``d`` features.
    :param config: the priors and ``q`` (:meth:`BPCAVBConfig.dims`).
    """

    def __init__(self, input_shape: tuple[int, ...], config: BPCAVBConfig) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.input_dim = math.prod(self.input_shape)
        self.latent_dim = config.dims(self.input_dim)
        self.config = config

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_shape, type(self).__name__)
        return x.reshape(x.shape[0], self.input_dim)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        x, c = self.flat(x), self.config
        d, q, one = self.input_dim, self.latent_dim, x.new_ones(())
        mu = pyro.sample("mu", dist.Normal(0 * one, c.beta**-0.5).expand([d]).to_event(1))
        alpha = pyro.sample("alpha", dist.Gamma(c.a_alpha * one, c.b_alpha).expand([q]).to_event(1))
        w_scale = alpha.rsqrt().unsqueeze(-2).expand(*alpha.shape[:-1], d, q)
        W = pyro.sample("W", dist.Normal(0 * one, w_scale).to_event(2))
        tau = pyro.sample("tau", dist.Gamma(c.c_tau * one, c.d_tau))
        with data_plate(x, num_data):
            z = pyro.sample("z", dist.Normal(0 * one, 1.0).expand([q]).to_event(1))
            loc = (W @ z.unsqueeze(-1)).squeeze(-1) + mu
            return pyro.sample("x", dist.Normal(loc, tau.rsqrt()).to_event(1), obs=x)


_FACTORS = ("M", "S_w", "m_mu", "s_mu", "a_alpha", "b_alpha", "a_tau", "b_tau")


class VBPosterior(torch.nn.Module):
    """The global factors of :class:`VBState` as parameters without gradients (checkpointed
    with the model), and ``q(z_n)`` computed from them in closed form; a guide of
    :class:`BayesianPCA`.  ``M`` holds its ``N(0, 1)`` start until the first sweep scales it."""

    def __init__(self, model: BayesianPCA) -> None:
        super().__init__()
        d, q = model.input_dim, model.latent_dim
        f64 = torch.float64
        shapes = {"M": (d, q), "S_w": (q, q), "m_mu": (d,), "b_alpha": (q,)}
        for name in _FACTORS:
            init = torch.ones(shapes.get(name, ()), dtype=f64)
            if name == "M":
                init = torch.randn(d, q, dtype=f64)
            elif name in ("S_w", "m_mu", "s_mu"):
                init = 0 * init
            self.register_parameter(name, torch.nn.Parameter(init, requires_grad=False))
        self.register_buffer("sweeps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("bound", torch.full((), -math.inf, dtype=f64))
        self.flat = model.flat

    def state(self) -> VBState:
        """A float64 copy of the factors (``X``, ``S_x`` empty: they belong to data)."""
        return VBState(**{name: getattr(self, name).detach().clone() for name in _FACTORS})

    def load(self, s: VBState) -> None:
        """Copy the global factors of ``s`` in."""
        for name in _FACTORS:
            getattr(self, name).copy_(getattr(s, name))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> None:
        t = self.flat(x).to(torch.float64)
        s = self.state()
        update_z(s, t)  # q(z_n) given the global factors: their VB update
        q = s.M.shape[1]
        eye = torch.eye(q, dtype=s.M.dtype, device=s.M.device)
        w_tril = torch.linalg.cholesky(s.S_w + 1e-12 * eye)
        f = {n: v.to(x.dtype) for n, v in vars(s).items()}
        mu_scale = f["s_mu"].clamp_min(1e-24).sqrt()
        pyro.sample("mu", dist.Normal(f["m_mu"], mu_scale).to_event(1))
        pyro.sample("alpha", dist.Gamma(f["a_alpha"], f["b_alpha"]).to_event(1))
        row = dist.MultivariateNormal(f["M"], scale_tril=w_tril.to(x.dtype))
        pyro.sample("W", row.to_event(1))
        pyro.sample("tau", dist.Gamma(f["a_tau"], f["b_tau"]))
        with data_plate(x, num_data):
            z_tril = torch.linalg.cholesky(s.S_x).to(x.dtype)
            pyro.sample("z", dist.MultivariateNormal(f["X"], scale_tril=z_tril))


def vb_step(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None, num_data: int) -> float:
    """The entry's ``closed_form_step``: one sweep on the full training set ``x``.

    :returns: ``-L`` (the trainer's loss); the guide records ``L`` and the sweep count.
    :raises ValueError: for a minibatch (``len(x) < num_data``): a sweep on part of the data is
        not coordinate ascent on ``L``.
    :raises RuntimeError: if ``L`` fell since the last sweep.
    """
    if x.shape[0] != num_data:
        raise ValueError(
            f"{zm.name} takes one closed-form sweep over the whole training set per step, not a "
            f"minibatch ({x.shape[0]} of {num_data}): use batch_size >= {num_data}"
        )
    guide: VBPosterior = zm.guide
    t = as_data(zm.model.flat(x))
    with torch.no_grad():
        if int(guide.sweeps) == 0:  # scale the N(0, 1) start to the data (module docstring)
            s = init_state(t, guide.M.shape[1], zm.config, noise=guide.M.detach())
        else:
            s = guide.state()
        sweep(s, t, zm.config)
        bound = iterate(s, t, zm.config, float(guide.bound))
        check_monotone([float(guide.bound), bound])
        guide.load(s)
        guide.bound.fill_(bound)
        guide.sweeps += 1
    return -bound


def _plug_in(zm: ZooModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g: VBPosterior = zm.guide
    return g.M.detach(), g.m_mu.detach(), (g.b_tau / g.a_tau).detach()


def active_dimensions(zm: ZooModel) -> torch.Tensor:
    """The active columns of ``E_q[W]`` (the module docstring's rule), a boolean mask."""
    return zm.guide.state().active(zm.config.active_tol)


def metrics(zm: ZooModel, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, float]:
    """Plug-in log-likelihood per point, reconstruction error from ``E[z]``, ``1/sqrt(E[tau])``,
    the active dimensions, and the bound per training point at the last sweep."""
    M, mu, noise_var = _plug_in(zm)
    t = zm.model.flat(x).to(torch.float64)
    s = zm.guide.state()
    update_z(s, t)
    recon = s.X @ M.T + mu
    return {
        "log_lik": ppca_log_likelihood(t, M, mu, noise_var).mean().item(),
        "recon_mse": (recon - t).square().mean().item(),
        "noise_std": noise_var.sqrt().item(),
        "active_dims": int(active_dimensions(zm).sum()),
        "sweeps": int(zm.guide.sweeps),
    }


@torch.no_grad()
def pointwise_log_likelihood(
    zm: ZooModel,
    x: torch.Tensor,
    y: torch.Tensor | None,
    num_samples: int,
    batch_size: int | None = None,
    samples: dict[str, torch.Tensor] | None = None,
) -> PointwiseDraws:
    """``log N(x_i; mu_s, W_s W_s^T + I / tau_s)`` for draws of ``(W, mu, tau)`` from ``q`` (or
    the given ``samples``), ``z`` integrated out; the posterior group holds ``1/sqrt(tau)``."""
    if samples is None:
        draws = []
        for _ in range(num_samples):
            trace = pyro.poutine.trace(zm.guide).get_trace(x[:1])
            draws.append({k: trace.nodes[k]["value"] for k in ("W", "mu", "tau")})
        samples = {k: torch.stack([dr[k] for dr in draws]) for k in ("W", "mu", "tau")}
    t = zm.model.flat(x)
    rows = [
        ppca_log_likelihood(t, W, mu, 1 / tau)
        for W, mu, tau in zip(samples["W"], samples["mu"], samples["tau"], strict=True)
    ]
    noise = samples["tau"].double().rsqrt().cpu()
    return PointwiseDraws(log_lik=torch.stack(rows).cpu(), posterior={"noise_std": noise})


def elbo_for(config: BPCAVBConfig, train: object | None) -> str:
    """The entry's ELBO (``trace``, for the Monte Carlo ELBO of the Pyro pair), refusing the
    training settings that a closed-form sweep cannot honour.

    :raises ValueError: for ``compile=True``, distributed training, or a KL weight or warm-up
        (a sweep maximizes ``L`` itself, not a reweighted one).
    """
    if train is not None:
        if train.compile or train.distributed:
            raise ValueError(
                "bpca-vb takes closed-form sweeps, not gradient steps: compile=True and "
                "distributed training do not apply to it"
            )
        if train.kl_weight != 1.0 or train.kl_warmup_end > 0:
            raise ValueError("bpca-vb's sweeps maximize the bound itself: no KL weight or warm-up")
    return "trace"


def _build(config: BPCAVBConfig, info: DataInfo) -> BayesianPCA:
    return BayesianPCA(info.input_shape, config)


def _vb_guide(config: BPCAVBConfig, info: DataInfo, model: BayesianPCA) -> VBPosterior:
    return VBPosterior(model)


#: The family's registry entry, collected by :mod:`zoo.registry`.
SPECS = (
    ModelSpec(
        name="bpca-vb",
        family="bpca",
        description="Bayesian PCA by variational Bayes: one closed-form sweep per step (full "
        "batch), ARD switches surplus dimensions off in tens of sweeps",
        # q = 10 as for `bpca`; Bishop's q = d - 1 lets the noise collapse on digits, whose 4
        # constant and many near-constant pixels give tiny trailing eigenvalues (docs/ppca.md)
        config=BPCAVBConfig(latent_dim=10),
        build_model=_build,
        guides={"vb": _vb_guide},
        default_guide="vb",
        dataset="digits",
        # one sweep per epoch: the whole training set is the batch; lr is unused (no gradients)
        train_defaults={"num_epochs": 100, "batch_size": 1_000_000},
        reference=REFERENCE,
        observes="x",
        hooks=Hooks(
            closed_form_step=vb_step,
            elbo_for=elbo_for,
            metrics=metrics,
            plot=LazyPlot("zoo.models.plots.bpca"),
            log_likelihood=pointwise_log_likelihood,
        ),
    ),
)
