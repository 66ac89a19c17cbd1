"""Bayesian PCA by variational Bayes (Bishop 1999): ARD against a synthetic ground truth, the
bound against closed forms and Monte Carlo, each update a coordinate maximum, the refusals, and
the registry entry ``bpca-vb`` trained through :func:`zoo.fit`."""

import dataclasses
import math

import pytest
import torch
from pyro import poutine

from benchmarks.bpca import max_principal_angle, synthetic
from zoo import create_model, fit, from_tensors
from zoo.models import vbpca
from zoo.models.bpca import BayesianPCA, VBPosterior, pointwise_log_likelihood, vb_step
from zoo.models.ppca import ppca_closed_form
from zoo.models.vbpca import BPCAVBConfig, fit_vb, init_state, lower_bound, sweep

NOISE = 0.1  # the synthetic data's noise variance (benchmarks.bpca.synthetic)


@pytest.fixture(scope="module")
def data():
    return synthetic(seed=0)


# (seed, init_scale): random starts from tiny to large, relative to the data's scale
STARTS = [(0, 1e-3), (1, 0.01), (2, 0.1), (0, 1.0), (1, 3.0)]


@pytest.mark.parametrize(("seed", "scale"), STARTS)
def test_switches_off_exactly_five_of_eight_in_tens_of_sweeps(data, seed, scale):
    x, W = data
    r = fit_vb(x, 8, seed=seed, init_scale=scale)
    assert r.num_active == 3
    # measured (these five starts and ten more, benchmarks/results/bpca): the active set is
    # final by sweep 39 and L converged (tol 1e-9) by sweep 71 at the latest
    assert r.active_since <= 60
    assert r.converged and r.iterations <= 120
    # the surplus columns are switched off, not merely small: E[alpha] a thousand times larger
    alpha = r.alpha_mean.sort().values
    assert alpha[3] > 1e3 * alpha[2]
    # the bound never decreases (fit_vb also raises at a fall beyond 1e-10 |L|)
    bounds = torch.tensor(r.bounds, dtype=torch.float64)
    assert (bounds.diff() >= -vbpca.MONOTONE_RTOL * bounds[:-1].abs()).all()
    # the true subspace (measured 0.5 deg) and the noise (measured 0.0989; the ML estimate
    # with 3 components on these data is the same to 1e-3)
    assert max_principal_angle(W, r.W_mean[:, r.active]) < 2.0
    assert r.noise_variance == pytest.approx(NOISE, rel=0.05)


def test_plain_bishop_sweeps_are_monotone_and_keep_the_true_subspace(data):
    x, W = data
    r = fit_vb(x, 8, seed=1, init_scale=0.1, rotate=False, max_iter=150)
    bounds = torch.tensor(r.bounds, dtype=torch.float64)
    assert (bounds.diff() >= -vbpca.MONOTONE_RTOL * bounds[:-1].abs()).all()
    # slow to prune (that is why the rotation is on by default) but the span is right
    assert r.num_active >= 3
    assert max_principal_angle(W, r.W_mean[:, r.active]) < 2.0


def test_the_bound_lies_below_the_maximum_ppca_likelihood(data):
    """L <= log p(T) = log E_prior[p(T | W, mu, tau)] <= max_theta log p(T | theta), the
    closed-form PPCA maximum with q = 8 (Tipping & Bishop 1999)."""
    x, _ = data
    r = fit_vb(x, 8, seed=0)
    ml = ppca_closed_form(x, 8)
    max_log_lik = ml.log_likelihood(x).sum().item()
    assert r.bounds[-1] < max_log_lik
    # and not far below it: the gap is the Occam factor of ~40 globals under broad priors and
    # the 8-component ML's fit to the noise (measured 360 nats, 6 %)
    assert r.bounds[-1] > max_log_lik - 0.1 * abs(max_log_lik)


def test_the_bound_matches_a_monte_carlo_elbo_of_the_pyro_model_and_guide(data):
    """The closed-form L equals E_q[log p(T, theta) - log q(theta)] estimated with Pyro traces
    of BayesianPCA and VBPosterior, within 5 standard errors."""
    x, _ = data
    cfg = BPCAVBConfig(latent_dim=4)
    model = BayesianPCA((10,), cfg)
    guide = VBPosterior(model)
    s = init_state(x, 4, cfg, torch.randn(10, 4, generator=torch.Generator().manual_seed(0)))
    for _ in range(5):
        sweep(s, x, cfg)
    guide.load(s)
    vbpca.update_z(s, x)  # the guide's q(z) is this update of the globals
    exact = lower_bound(s, x, cfg)
    torch.manual_seed(0)
    values = []
    for _ in range(300):
        g = poutine.trace(guide).get_trace(x)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
        values.append(m.log_prob_sum().item() - g.log_prob_sum().item())
    values = torch.tensor(values, dtype=torch.float64)
    se = values.std() / math.sqrt(len(values))
    assert abs(values.mean().item() - exact) < 5 * se.item() + 1e-6 * abs(exact)


def _perturb(s: vbpca.VBState, factor: str, eps: float, gen: torch.Generator) -> vbpca.VBState:
    s = dataclasses.replace(s)
    f64 = {"dtype": torch.float64}

    def noise(like):
        return torch.randn(like.shape, generator=gen, **f64)

    def spd(S):
        A = torch.linalg.cholesky(S)
        A = A + eps * torch.tril(noise(A)) * A.diagonal().mean()
        return A @ A.T

    if factor == "z":
        s.X, s.S_x = s.X + eps * noise(s.X), spd(s.S_x)
    elif factor == "mu":
        s.m_mu, s.s_mu = s.m_mu + eps * noise(s.m_mu), s.s_mu * math.exp(eps)
    elif factor == "W":
        s.M, s.S_w = s.M + eps * noise(s.M) * s.M.abs().mean(), spd(s.S_w)
    elif factor == "alpha":
        s.a_alpha = s.a_alpha * math.exp(eps * noise(s.a_alpha).item())
        s.b_alpha = s.b_alpha * (eps * noise(s.b_alpha)).exp()
    else:
        s.a_tau = s.a_tau * math.exp(eps * noise(s.a_tau).item())
        s.b_tau = s.b_tau * math.exp(eps * noise(s.b_tau).item())
    return s


UPDATES = {
    "z": lambda s, x, c: vbpca.update_z(s, x),
    "mu": vbpca.update_mu,
    "W": lambda s, x, c: vbpca.update_w(s, x),
    "alpha": lambda s, x, c: vbpca.update_alpha(s, c),
    "tau": vbpca.update_tau,
}


@pytest.mark.parametrize("factor", list(UPDATES))
def test_each_update_is_a_coordinate_maximum(data, factor):
    """Mid-run (after 3 plain sweeps), each update raises L, and perturbing the updated factor
    in random directions (relative sizes 1e-4 and 1e-2) lowers it: finite differences."""
    x, _ = data
    cfg = BPCAVBConfig(latent_dim=8, rotate=False)
    s = init_state(x, 8, cfg, torch.randn(10, 8, generator=torch.Generator().manual_seed(1)))
    for _ in range(3):
        sweep(s, x, cfg)
    before = lower_bound(s, x, cfg)
    UPDATES[factor](s, x, cfg)
    best = lower_bound(s, x, cfg)
    assert best >= before - 1e-10 * abs(before)
    gen = torch.Generator().manual_seed(2)
    for eps in (1e-4, 1e-2):
        for _ in range(5):
            up = lower_bound(_perturb(s, factor, eps, gen), x, cfg)
            # round-off of L (about 1e4 nats) in float64 is far below 1e-9 |L|
            assert up <= best + 1e-9 * abs(best), (factor, eps, best - up)


def test_the_rotation_never_lowers_the_bound(data):
    x, _ = data
    cfg = BPCAVBConfig(latent_dim=8, rotate=False)
    s = init_state(x, 8, cfg, torch.randn(10, 8, generator=torch.Generator().manual_seed(0)))
    for _ in range(4):
        sweep(s, x, cfg)
        before = lower_bound(s, x, cfg)
        vbpca.rotate(s, x.shape[0], cfg)
        assert lower_bound(s, x, cfg) >= before - 1e-10 * abs(before)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        ([[1.0, 2.0]], {}, "must be a torch.Tensor"),
        (torch.ones(5), {}, r"shape \(N, ...\)"),
        (torch.randn(1, 4), {}, "at least 2 points"),
        (torch.tensor([[1.0, math.nan], [0.0, 1.0]]), {}, "non-finite"),
        (torch.ones(6, 3), {}, "no variance"),
        (torch.randn(6, 3), {"latent_dim": 3}, r"latent_dim must lie in \[1, 2\]"),
        (torch.randn(6, 3), {"tol": 0.0}, "tol must be positive"),
        (torch.randn(6, 3), {"active_tol": 1.0}, r"active_tol must lie in \(0, 1\)"),
        (torch.randn(6, 3), {"max_iter": 0}, "max_iter must be >= 1"),
        (torch.randn(6, 3), {"latent_dim": -1}, "latent_dim must be >= 0"),
    ],
)
def test_bad_inputs_are_refused_with_clear_errors(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_vb(x, **kwargs)


def test_a_falling_bound_is_reported_as_a_bug():
    with pytest.raises(RuntimeError, match="decreased at sweep 2"):
        vbpca.check_monotone([-100.0, -101.0])


def test_the_entry_trains_through_fit_one_sweep_per_step(data, tmp_path):
    x, _ = data
    ds = from_tensors(x.float())
    zm = create_model("bpca-vb", data=ds, latent_dim=8, seed=0)
    result = fit(zm, ds, num_epochs=30, progress=False, out_dir=str(tmp_path))
    assert result.steps == 30 and (tmp_path / "checkpoint.pt").exists()
    bounds = -torch.tensor(result.losses, dtype=torch.float64) * len(x)
    assert (bounds.diff() >= -1e-9 * bounds[:-1].abs()).all()
    # the same sweeps as fit_vb from the same start, to 1e-6, until the rotations start (the
    # trainer permutes the rows, so sums round differently, and L-BFGS amplifies that)
    ref = fit_vb(x.float(), 8, seed=0, max_iter=30, tol=1e-300)
    assert bounds[:8].tolist() == pytest.approx(ref.bounds[:8], rel=1e-6)
    metrics = zm.evaluate(ds, "train")
    assert metrics["active_dims"] == 3 and metrics["sweeps"] == 30
    assert metrics["noise_std"] ** 2 == pytest.approx(NOISE, rel=0.05)


def test_the_entry_refuses_minibatches_and_impossible_dimensions(data):
    x, _ = data
    ds = from_tensors(x.float())
    zm = create_model("bpca-vb", data=ds, latent_dim=8, seed=0)
    with pytest.raises(ValueError, match="not a minibatch"):
        vb_step(zm, ds.x_train[:100], None, len(x))
    with pytest.raises(ValueError, match="not a minibatch"):
        fit(zm, ds, num_epochs=1, batch_size=100, progress=False)
    with pytest.raises(ValueError, match="compile=True and distributed"):
        fit(zm, ds, num_epochs=1, compile=True, progress=False)
    with pytest.raises(ValueError, match="no KL weight or warm-up"):
        fit(zm, ds, num_epochs=1, kl_weight=0.5, progress=False)
    with pytest.raises(ValueError, match=r"latent_dim must lie in \[1, 9\]"):
        create_model("bpca-vb", data=ds, latent_dim=10)


def test_projection_is_the_z_update_and_near_the_ppca_posterior_mean(data):
    """``project`` gives q(x_n)'s update; with the surplus columns off it is close to Tipping
    & Bishop's E[z | x] under the plug-in W, mu, 1/tau (exact when q(W) has no spread)."""
    x, _ = data
    r = fit_vb(x, 8, seed=0)
    z = r.project(x[:50])
    M, mu, s2 = r.W_mean, r.mu_mean, r.noise_variance
    plug_in = torch.linalg.solve(
        M.T @ M + s2 * torch.eye(8, dtype=M.dtype), M.T @ (x[:50] - mu).T
    ).T
    # q(W)'s spread adds d S_w to M^T M, a change of order 1/N: measured 2.3e-4 at most, on
    # projections up to 2.9; the switched-off dimensions project to 2e-7
    active = r.active
    assert (z[:, active] - plug_in[:, active]).abs().max() < 2e-3
    assert z[:, ~active].abs().max() < 1e-4


def test_pointwise_log_likelihood_draws_from_q_for_comparison(data):
    """The hook ``zoo compare`` reads: ``log N(x_i; mu_s, W_s W_s^T + I / tau_s)`` for draws
    from q.  A draw scores below the plug-in posterior means by about (number of globals) /
    (2 N) = 41 / 1000 nats per point (measured: 0.041 at most over 4 draws); tolerance 0.1."""
    x, _ = data
    ds = from_tensors(x.float())
    zm = create_model("bpca-vb", data=ds, latent_dim=8, seed=0)
    fit(zm, ds, num_epochs=30, progress=False)
    torch.manual_seed(0)
    draws = pointwise_log_likelihood(zm, ds.x_train, None, num_samples=4)
    assert draws.log_lik.shape == (4, len(x)) and draws.log_lik.dtype == torch.float64
    plug_in = zm.evaluate(ds, "train")["log_lik"]
    gap = plug_in - draws.log_lik.mean(1)
    assert (gap > 0).all() and (gap < 0.1).all()
    assert draws.log_lik.std(0).max() > 0
    assert draws.posterior["noise_std"].shape == (4,)


def test_a_resumed_run_continues_the_sweeps_bit_for_bit(data, tmp_path):
    """The factors, the sweep count and the last bound are in the checkpoint."""
    x, _ = data
    ds = from_tensors(x.float())
    straight = create_model("bpca-vb", data=ds, latent_dim=8, seed=0)
    fit(straight, ds, num_epochs=12, progress=False, out_dir=str(tmp_path / "a"))
    resumed = create_model("bpca-vb", data=ds, latent_dim=8, seed=0)
    fit(resumed, ds, num_epochs=5, progress=False, out_dir=str(tmp_path / "b"))
    again = create_model("bpca-vb", data=ds, latent_dim=8, seed=0)
    fit(again, ds, num_epochs=12, progress=False, out_dir=str(tmp_path / "b"), resume=True)
    assert int(again.guide.sweeps) == 12
    ref, got = straight.guide.state_dict(), again.guide.state_dict()
    assert list(ref) == list(got)
    for name in ref:
        assert torch.equal(ref[name], got[name]), name
