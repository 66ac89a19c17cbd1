"""SBP (zoo.structured, guides.structured): the truncated log-normal, its KL, the noise layers."""

import math

import numpy as np
import pyro
import pytest
import torch
from scipy import integrate, special, stats
from torch import nn
from torch.distributions import kl_divergence

import zoo
from guides.structured import SBPGuide
from zoo.handlers.lrt import LocalReparameterization
from zoo.models.bnn import BNN
from zoo.structured import (
    SBP,
    TruncatedLogNormal,
    TruncatedLogUniform,
    log_diff_ndtr,
    sbp_kl,
    unit_sites,
)

A, B = -20.0, 0.0
# (mu, sigma): interior, at the upper bound with tiny noise, wide (close to the prior), low end
CASES = [(-3.0, 1.0), (0.0, 0.01), (-10.0, 5.0), (-19.0, 0.3), (-0.5, 2.0), (-20.0, 1e-3)]


def _q(mu, sigma, dtype=torch.float64):
    return TruncatedLogNormal(
        torch.tensor([mu], dtype=dtype), torch.tensor([sigma], dtype=dtype), A, B
    )


def _density(mu, sigma):
    """The density of x = log theta: scipy's truncated normal on [A, B]."""
    return stats.truncnorm((A - mu) / sigma, (B - mu) / sigma, loc=mu, scale=sigma)


def _quad(f, mu, sigma):
    # The mass lies within 40 sigma of mu (clipped to [A, B]); splitting there helps quad.
    lo, hi = max(A, mu - 40 * sigma), min(B, mu + 40 * sigma)
    points = [p for p in (mu - sigma, mu, mu + sigma) if lo < p < hi]
    return integrate.quad(f, lo, hi, points=points or None, limit=400, epsabs=0.0, epsrel=1e-12)[0]


@pytest.mark.parametrize(("mu", "sigma"), CASES)
def test_kl_matches_numerical_integration(mu, sigma):
    """KL(q || p) = int q(x) log(q(x) (b - a)) dx over x = log theta (the KL is invariant under
    exp), by quadrature, against the closed form; absolute tolerance 1e-7 nats."""
    rv = _density(mu, sigma)
    exact = _quad(lambda x: rv.pdf(x) * (rv.logpdf(x) + math.log(B - A)), mu, sigma)
    q = _q(mu, sigma)
    assert sbp_kl(q).item() == pytest.approx(exact, abs=1e-7)
    p = TruncatedLogUniform(A, B, (1,))
    assert kl_divergence(q, p).item() == pytest.approx(exact, abs=1e-7)


def test_kl_vanishes_when_q_is_the_prior_and_refuses_other_intervals():
    """sigma -> infinity: q is uniform on [a, b] in log space, the KL -> 0 (1e-3 at sigma=1e3)."""
    assert sbp_kl(_q(-10.0, 1e3)).item() == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="same interval"):
        kl_divergence(_q(-1.0, 1.0), TruncatedLogUniform(-10.0, 0.0, (1,)))


@pytest.mark.parametrize(("mu", "sigma"), CASES)
def test_moments_and_density_match_quadrature(mu, sigma):
    """E[theta], Var[theta] and log q(theta) against quadrature / scipy, relative 1e-6."""
    rv = _density(mu, sigma)
    q = _q(mu, sigma)
    m1 = _quad(lambda x: rv.pdf(x) * math.exp(x), mu, sigma)
    m2 = _quad(lambda x: rv.pdf(x) * math.exp(2 * x), mu, sigma)
    assert q.mean.item() == pytest.approx(m1, rel=1e-6)
    if sigma >= 0.01:  # below, Var/E^2 ~ sigma^2 is lost to rounding in the quadrature
        assert q.variance.item() == pytest.approx(m2 - m1 * m1, rel=1e-5)
        assert q.log_alpha().item() == pytest.approx(math.log((m2 - m1 * m1) / m1**2), abs=1e-5)
    # log q(theta) = log N_trunc(log theta) - log theta (the change of variables)
    x = np.clip(mu + 0.5 * sigma, A + 1e-9, B - 1e-9)
    theta = torch.tensor([math.exp(x)], dtype=torch.float64)
    assert q.log_prob(theta).item() == pytest.approx(rv.logpdf(x) - x, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("mu", "sigma"), [(-3.0, 1.0), (0.0, 0.5), (-10.0, 5.0)])
def test_rsample_follows_the_truncated_law_and_is_reparameterized(mu, sigma):
    """Kolmogorov-Smirnov of 20000 draws of log theta against scipy's truncnorm (p > 1e-3), and
    a gradient through the draw equal to d E[theta] / d mu by finite differences (3 %)."""
    torch.manual_seed(0)
    draws = _q(mu, sigma).rsample((20000,)).log().squeeze(-1).numpy()
    assert stats.kstest(draws, _density(mu, sigma).cdf).pvalue > 1e-3
    loc = torch.tensor([mu], dtype=torch.float64, requires_grad=True)
    q = TruncatedLogNormal(loc, torch.tensor([sigma], dtype=torch.float64), A, B)
    q.rsample((200000,)).mean().backward()
    h = 1e-5
    fd = (_q(mu + h, sigma).mean - _q(mu - h, sigma).mean).item() / (2 * h)
    assert loc.grad.item() == pytest.approx(fd, rel=0.03)


def test_log_diff_ndtr_in_both_tails():
    """Against scipy's log_ndtr in float64 where the plain difference is exact, and the
    reflected form in the upper tail (where 1 - 1e-30 rounds to 1)."""
    hi = torch.tensor([1.0, -30.0, 0.5, 40.0], dtype=torch.float64)
    lo = torch.tensor([-1.0, -31.0, -50.0, 39.0], dtype=torch.float64)
    expect = [
        math.log(special.ndtr(1.0) - special.ndtr(-1.0)),
        special.log_ndtr(-30.0)
        + math.log1p(-math.exp(special.log_ndtr(-31) - special.log_ndtr(-30))),
        special.log_ndtr(0.5),
        special.log_ndtr(-39.0)
        + math.log1p(-math.exp(special.log_ndtr(-40) - special.log_ndtr(-39))),
    ]
    np.testing.assert_allclose(log_diff_ndtr(hi, lo).numpy(), expect, rtol=1e-10)


def test_truncated_log_uniform_prior():
    """Density integrates to 1 on [e^a, e^b]; draws stay inside; mean (e^b - e^a)/(b - a)."""
    p = TruncatedLogUniform(-3.0, 1.0, (5,))
    total = integrate.quad(
        lambda t: math.exp(p.log_prob(torch.tensor(t, dtype=torch.float64)).item()),
        math.exp(-3),
        math.exp(1),
    )[0]
    assert total == pytest.approx(1.0, rel=1e-8)
    torch.manual_seed(0)
    s = p.rsample((50000,))
    assert s.min() >= math.exp(-3) and s.max() <= math.exp(1)
    assert s.mean().item() == pytest.approx(p.mean[0].item(), rel=0.01)
    assert p.mean[0].item() == pytest.approx((math.e - math.exp(-3)) / 4)


def _sbp_mlp():
    info = zoo.load("digits").info
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 10))
    return BNN(lambda: net, SBP(), info)


def test_sbp_puts_noise_on_hidden_units_only_and_the_lrt_draws_it_per_example():
    """The output layer gets no noise; under the handler each example and unit gets its own
    draw, whose mean and variance per unit are q's (4 standard errors over 4000 examples)."""
    pyro.clear_param_store()
    model = _sbp_mlp()
    assert [(s.name, s.units) for s in unit_sites(model)] == [("net.1.unit_noise", 20)]
    guide = SBPGuide(model, init_loc=-1.0, init_log_sigma=math.log(0.5))
    layer = model.net[1]
    x = torch.randn(1, 64).expand(4000, 64)
    with torch.no_grad(), LocalReparameterization(draw_weights=False):
        guide_trace = pyro.poutine.trace(guide).get_trace()
        lrt_out = pyro.poutine.replay(layer, trace=guide_trace)(x)
    base = nn.functional.linear(x[:1], layer.weight, layer.bias)
    ratio = lrt_out / base
    q = guide.posterior("net.1.unit_noise").base_dist
    assert not torch.allclose(lrt_out[0], lrt_out[1])  # a draw per example
    se_mean = (q.variance / 4000).sqrt()
    assert ((ratio.mean(0) - q.mean).abs() < 4 * se_mean).all()
    assert torch.allclose(ratio.var(0), q.variance, rtol=0.15)


def test_elbo_kl_term_is_the_sum_of_unit_kls():
    """The guide's site KL (Independent over units) is the sum of sbp_kl per unit."""
    pyro.clear_param_store()
    model = _sbp_mlp()
    guide = SBPGuide(model, init_loc=-2.0, init_log_sigma=0.0)
    q = guide.posterior("net.1.unit_noise")
    p = SBP().distribution(torch.Size([20]), torch.zeros(())).to_event(1)
    assert kl_divergence(q, p).item() == pytest.approx(sbp_kl(q.base_dist).sum().item(), rel=1e-6)


def test_guide_masks_prune_by_snr():
    """log alpha = -2 log SNR; a unit is kept iff SNR >= 1 (threshold 0)."""
    pyro.clear_param_store()
    guide = SBPGuide(_sbp_mlp())
    guide.sites[0].set_(torch.linspace(-20, 0, 20), 0.5)
    q = guide.posterior("net.1.unit_noise").base_dist
    snr = q.mean / q.variance.sqrt()
    assert torch.equal(guide.masks()["net.1.unit_noise"], snr >= 1)
    assert 0 < int(guide.masks()["net.1.unit_noise"].sum()) < 20


def test_lr_scale_moves_the_noise_parameters_faster_under_adam():
    """The same mu and log sigma; one Adam step moves them lr_scale times as far (Adam's first
    step is lr * sign(grad) in the stored parameter)."""
    pyro.clear_param_store()
    moved = []
    for scale in (1.0, 10.0):
        guide = SBPGuide(_sbp_mlp(), init_loc=-1.0, init_log_sigma=-1.0, lr_scale=scale)
        site = guide.sites[0]
        assert torch.allclose(site.loc, torch.full((20,), -1.0))
        opt = torch.optim.Adam(site.parameters(), lr=1e-3)
        sbp_kl(site.distribution().base_dist).sum().backward()
        opt.step()
        moved.append((site.log_sigma.detach() + 1.0).abs().mean().item())
    assert moved[1] == pytest.approx(10 * moved[0], rel=1e-3)


def test_input_noise_goes_on_the_first_linear_layer():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 2)
    )
    SBP(inputs=True).apply_(net)
    assert [(s.name, s.units, s.where) for s in unit_sites(net)] == [
        ("0.unit_noise", 4, "out"),
        ("2.input_noise", 36, "in"),
        ("2.unit_noise", 8, "out"),
    ]


def test_sbp_refuses_a_single_layer_and_a_second_application():
    with pytest.raises(ValueError, match="no hidden unit"):
        SBP().apply_(nn.Sequential(nn.Linear(3, 2)))
    net = SBP().apply_(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="already has SBP noise"):
        SBP().apply_(net)
    with pytest.raises(ValueError, match="low < high"):
        SBP(0.0, -1.0)


def test_a_checkpoint_rebuilds_an_sbp_net_without_the_prior_given_again(tmp_path):
    """SBP is the zoo's own prior: from_module records it by its fields (prior "sbp", low,
    high, inputs), so from_checkpoint rebuilds it with only the net given again (an
    instance cannot be named) and the shrunk export is the same net exactly.  A subclass
    of SBP has code no field records: it stays "custom" and must be passed again."""
    from zoo.jobs import from_checkpoint
    from zoo.models.structured import export_shrunk

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=gen)
    data = zoo.from_tensors(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())

    def mlp():
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    zm = zoo.from_module(mlp(), data=data, prior=SBP(low=-15.0, inputs=True), seed=0)
    assert (zm.config.prior, zm.config.sbp_low, zm.config.sbp_inputs) == ("sbp", -15.0, True)
    site = zm.guide.sites[1]  # the first layer's units (its input noise is sites[0])
    site.set_(site.loc.detach(), torch.tensor([2.0] * 5 + [-5.0] * 11))  # 5 units off: SNR << 1
    zoo.fit(zm, data, num_epochs=1, batch_size=32, progress=False, out_dir=str(tmp_path))
    rebuilt, _ = from_checkpoint(str(tmp_path), net=mlp())
    assert rebuilt.spec.default_guide == "sbp"
    assert rebuilt.guide.site_names == zm.guide.site_names
    low = [s.module._zoo_prior.low for s in unit_sites(rebuilt.model.net)]
    assert low == [-15.0, -15.0]
    small, again = export_shrunk(zm), export_shrunk(rebuilt)
    assert small[0].out_features < 16
    with torch.no_grad():
        assert torch.equal(again(x), small(x))

    by_name = zoo.from_module(mlp(), data=data, prior="sbp", seed=0)
    assert by_name.config == zoo.from_module(mlp(), data=data, prior=SBP(), seed=0).config
    assert by_name.config.threshold == 0.0  # SBP's rule, SNR < 1, not sparse VD's log alpha 3

    class MySBP(SBP):
        pass

    custom = zoo.from_module(mlp(), data=data, prior=MySBP(), seed=0)
    assert custom.config.prior == "custom"
