"""Weight priors and their KLs (zoo.priors, guides.dropout) against closed forms and quadrature."""

import copy
import math
import pickle
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from pyro.nn import PyroModule
from scipy import integrate
from torch import nn
from torch.distributions import kl_divergence

import zoo
from guides.dropout import LOG_SIGMA2_MIN, DropoutWeight, MeanFieldGaussian, SparseVD
from zoo.priors import (
    ImproperLogUniform,
    LogUniform,
    Normal,
    log_alpha,
    sparse_vd_kl,
    weight_sites,
)

# KL(alpha) -> 0 as alpha -> infinity fixes the constant: C = (euler_gamma + log 2) / 2.
KL_CONSTANT = (np.euler_gamma + math.log(2.0)) / 2


def _exact_kl(log_a):
    """KL(N(theta, alpha theta^2) || log-uniform) = C - log(alpha)/2 + E log|1 + sqrt(alpha) eps|.

    The expectation is a quadrature against the N(0, 1) density on [-12, 12] (the tails beyond
    carry mass < 1e-32), split at the integrable log singularity eps = -1/sqrt(alpha).
    """
    root = math.sqrt(math.exp(log_a))

    def integrand(e):
        return math.log(abs(1.0 + root * e)) * math.exp(-0.5 * e * e) / math.sqrt(2 * math.pi)

    singular = -1.0 / root
    pieces = [(-12.0, singular), (singular, 12.0)] if singular > -12.0 else [(-12.0, 12.0)]
    value = sum(integrate.quad(integrand, a, b, limit=200, epsabs=1e-10)[0] for a, b in pieces)
    return KL_CONSTANT - 0.5 * log_a + value


def _registered_kl(log_a, theta=0.7):
    """The registered KL of N(theta, alpha theta^2) from the log-uniform prior, in float64."""
    log_a = torch.as_tensor(log_a, dtype=torch.float64)
    theta = torch.full_like(log_a, theta)
    scale = (log_a.exp() * theta.square()).sqrt()
    return kl_divergence(dist.Normal(theta, scale), ImproperLogUniform(log_a.shape))


def test_sparse_vd_kl_matches_numerical_integration():
    """Molchanov's eq. 14 against quadrature of the exact KL, log alpha in [-8, 8]."""
    grid = np.linspace(-8.0, 8.0, 33)
    exact = np.array([_exact_kl(a) for a in grid])
    approx = _registered_kl(grid).numpy()
    diff = approx - exact
    offset = diff.mean()
    # The paper's fit leaves a small constant offset (measured: 0.0021 nats) ...
    assert abs(offset) < 0.01, f"constant offset of the approximation: {offset:.5f} nats"
    # ... and, once the constant is aligned, a shape error of at most 0.01 nats (measured
    # 0.0073, at log alpha = -3.5); the quadrature itself is accurate to ~1e-9.
    worst = np.abs(diff - offset).max()
    assert worst <= 0.01, f"max |approx - exact| after aligning the constant: {worst:.5f}"
    # Both vanish for alpha -> infinity (the constants make it so); at log alpha = 8 the
    # residual is 0.5 log1p(e^-8) ~ 1.7e-4.
    assert 0.0 <= approx[-1] < 0.01
    assert abs(exact[-1]) < 0.01
    # The KL decreases monotonically in alpha: more noise is always closer to the prior.
    assert np.all(np.diff(approx) < 0)


def test_sparse_vd_kl_depends_on_alpha_only():
    """Scaling theta and sigma together leaves the KL unchanged (tolerance 1e-5 nats).

    Exact while theta^2 >> 1e-8, the jitter log_alpha adds to theta^2 (here theta^2 >= 0.09).
    """
    gen = torch.Generator().manual_seed(1)
    theta = (torch.rand(50, generator=gen, dtype=torch.float64) * 1.7 + 0.3) * torch.sign(
        torch.randn(50, generator=gen, dtype=torch.float64)
    )
    sigma = torch.rand(50, generator=gen, dtype=torch.float64) * 3 + 1e-3
    prior = ImproperLogUniform((50,))
    base = kl_divergence(dist.Normal(theta, sigma), prior)
    for factor in (0.5, 3.0, 1000.0):
        scaled = kl_divergence(dist.Normal(factor * theta, factor * sigma), prior)
        torch.testing.assert_close(scaled, base, rtol=0, atol=1e-5)
    # and it equals eq. 14 at log alpha = log sigma^2 - log theta^2 (up to the jitter, 1e-6)
    expected = sparse_vd_kl((sigma.square() / theta.square()).log().clamp(-8, 8))
    torch.testing.assert_close(base, expected, rtol=0, atol=1e-6)


def test_sparse_vd_kl_clips_log_alpha():
    """log alpha is clipped to [-8, 8] inside the KL: beyond it the value is constant."""
    kl = _registered_kl([20.0, 8.0, -20.0, -8.0])
    # beyond the clip the KL is eq. 14 at the bound, to float64 rounding (1e-12) ...
    assert kl[0].item() == pytest.approx(
        sparse_vd_kl(torch.tensor(8.0, dtype=torch.float64)).item(), abs=1e-12
    )
    assert kl[2].item() == pytest.approx(
        sparse_vd_kl(torch.tensor(-8.0, dtype=torch.float64)).item(), abs=1e-12
    )
    # ... which is the KL at the bound itself, up to the 1e-8 jitter on theta^2 (it moves log
    # alpha by 2e-8 here, the KL by < 1e-9)
    assert kl[0].item() == pytest.approx(kl[1].item(), abs=1e-9)
    assert kl[2].item() == pytest.approx(kl[3].item(), abs=1e-9)
    # a custom clip is honoured too: at [-4, 4] the value at log alpha = 6 is the one at 4
    theta, prior = torch.tensor(0.5), ImproperLogUniform((), log_alpha_clip=(-4.0, 4.0))
    at = [kl_divergence(dist.Normal(theta, theta * math.exp(a / 2)), prior).item() for a in (6, 4)]
    assert at[0] == pytest.approx(at[1], abs=1e-6)
    with pytest.raises(ValueError, match="low < high"):
        ImproperLogUniform((), log_alpha_clip=(1.0, -1.0))


def test_log_alpha_stays_finite_at_zero_theta_and_sigma():
    """log alpha, the KL and their gradients at theta = 0 and sigma = 0 or denormal (float32)."""
    tiny = torch.finfo(torch.float32).tiny
    floor = 2 * math.log(tiny) - math.log(1e-8)  # sigma clamped at tiny, theta^2 + 1e-8
    loc = torch.zeros(3)
    for scale in (torch.zeros(3), torch.full((3,), 1e-45)):
        assert scale[-1].item() < tiny  # really zero or denormal
        la = log_alpha(loc, scale)
        torch.testing.assert_close(la, torch.full((3,), floor), rtol=1e-6, atol=0)
    # theta = 0 with sigma = 1: log alpha = -log(1e-8) = 18.42, finite
    assert log_alpha(loc, torch.ones(3))[0].item() == pytest.approx(-math.log(1e-8), rel=1e-6)

    loc = torch.tensor([0.0, 0.0, 0.5], requires_grad=True)
    log_sigma2 = torch.tensor([-300.0, -10.0, -10.0], requires_grad=True)
    scale = (0.5 * log_sigma2).exp()
    assert scale[0].item() == 0.0  # underflows in float32
    la = log_alpha(loc, scale)
    g_loc, g_ls2 = torch.autograd.grad(la.sum(), (loc, log_sigma2))
    # d log alpha / d log sigma^2 = 1 where sigma is representable, 0 where it is clamped;
    # d log alpha / d theta = -2 theta / (theta^2 + 1e-8): 0 at theta = 0, -4 at theta = 0.5.
    torch.testing.assert_close(g_ls2, torch.tensor([0.0, 1.0, 1.0]))
    torch.testing.assert_close(g_loc, torch.tensor([0.0, 0.0, -4.0]), rtol=1e-5, atol=0)

    scale = (0.5 * log_sigma2).exp()
    q = dist.Normal(loc, scale, validate_args=False)  # scale 0 is outside Normal's support
    kl = kl_divergence(q, ImproperLogUniform((3,)))
    # log alpha at theta = 0 is clipped at 8 for sigma^2 = e^-10 (8.42 > 8): KL(8) ~ 1.7e-4
    torch.testing.assert_close(kl[1], sparse_vd_kl(torch.tensor(8.0)))
    grads = torch.autograd.grad(kl.sum(), (loc, log_sigma2))
    assert torch.isfinite(kl).all() and all(torch.isfinite(g).all() for g in grads)


class _TinyClassifier(PyroModule):
    def __init__(self):
        super().__init__()
        self.net = LogUniform().apply_(nn.Linear(3, 2))

    def forward(self, x, y=None):
        out = self.net(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Categorical(logits=out), obs=y)
        return out


def test_sparse_vd_elbo_is_finite_with_zero_theta_and_underflowed_sigma():
    """SparseVD with theta = 0 and log sigma^2 = -300: log alpha, ELBO and gradients finite."""
    model = _TinyClassifier()
    guide = SparseVD(model)
    site = guide.sites[0]
    with torch.no_grad():
        site.theta[0, 0] = 0.0
        site.log_sigma2[0, 0] = -300.0
        site.log_sigma2[1, 1] = -300.0
    la = guide.log_alpha()["net.weight"]
    assert torch.isfinite(la).all()
    # log alpha = max(log sigma^2, -30) - log(theta^2 + 1e-8): the guide floors sigma^2 at e^-30
    assert la[0, 0].item() == pytest.approx(LOG_SIGMA2_MIN - math.log(1e-8), rel=1e-6)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, generator=gen), torch.tensor([0, 1, 0, 1])
    with warnings.catch_warnings():
        # The guide's own log-density (unused by TraceMeanField, which takes the KL) is NaN at
        # sigma = 0; zoo.train.fit ignores Pyro's warning about it in the same way.
        warnings.filterwarnings("ignore", message="Encountered NaN")
        loss = TraceMeanField_ELBO().differentiable_loss(model, guide, x, y)
        loss.backward()
    assert torch.isfinite(loss)
    params = list(guide.parameters()) + list(model.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


def test_improper_log_uniform_density_and_sampling():
    """log p(w) = -log|w| exactly, capped (finite) at w = 0; sampling is refused."""
    p = ImproperLogUniform((5,))
    w = torch.tensor([-3.0, -0.25, 1e-3, 2.0, 7.5])
    torch.testing.assert_close(p.log_prob(w), -w.abs().log(), rtol=1e-6, atol=0)
    at_zero = p.log_prob(torch.zeros(5))
    # capped at |w| >= finfo.tiny: -log(1.18e-38) = 87.3 nats
    torch.testing.assert_close(at_zero, torch.full((5,), -math.log(torch.finfo().tiny)))
    # expand keeps the clip (the model's prior is expanded by Pyro's plates and to_event)
    assert p.expand((2, 5)).log_alpha_clip == p.log_alpha_clip
    with pytest.raises(NotImplementedError, match=r"improper.*cannot be sampled"):
        p.sample()


class _Custom(nn.Module):
    """A network not written for this library: Sequential inside, a layer of a third kind."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.norm = nn.LayerNorm(3 * 4 * 4)
        self.head = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.head(torch.tanh(self.norm(self.features(x))))


def test_prior_turns_any_module_into_a_bayesian_one():
    """apply_ on a foreign module: the right sites, same forward, biases stay parameters."""
    torch.manual_seed(0)
    net = _Custom()
    plain = copy.deepcopy(net)
    with pytest.warns(
        UserWarning,
        match=r"1 parametrized layer\(s\) of _Custom deterministic: "
        r"norm \(LayerNorm\)\.",
    ):
        assert LogUniform().apply_(net) is net
    sites = weight_sites(net)
    assert [(s.name, tuple(s.shape)) for s in sites] == [
        ("features.0.weight", (3, 2, 3, 3)),
        ("head.weight", (5, 48)),
    ]
    for s in sites:  # the initial value is the network's own initialization
        torch.testing.assert_close(s.init, plain.get_parameter(s.name), rtol=0, atol=0)
    assert isinstance(net.features[0].bias, nn.Parameter)
    assert isinstance(net.head.bias, nn.Parameter)
    assert isinstance(net.norm.weight, nn.Parameter)
    assert sorted(n for n, _ in net.named_parameters()) == [
        "features.0.bias",
        "head.bias",
        "norm.bias",
        "norm.weight",
    ]

    gen = torch.Generator().manual_seed(1)
    weights = {s.name: torch.randn(s.shape, generator=gen) for s in sites}
    with torch.no_grad():
        for name, w in weights.items():
            plain.get_parameter(name).copy_(w)
    x = torch.randn(6, 2, 4, 4, generator=gen)
    # Same weights, same output (float32 rounding of identical operations: 1e-6)
    torch.testing.assert_close(
        poutine.condition(net, data=weights)(x), plain(x), rtol=1e-6, atol=1e-6
    )
    # and under a guide's replayed draw, too
    guide = MeanFieldGaussian(net, init_scale=0.1)
    trace = poutine.trace(guide).get_trace()
    with torch.no_grad():
        for s in sites:
            plain.get_parameter(s.name).copy_(trace.nodes[s.name]["value"])
    torch.testing.assert_close(poutine.replay(net, trace=trace)(x), plain(x), rtol=1e-6, atol=1e-6)

    with pytest.raises(ValueError, match="already Bayesian"):
        LogUniform().apply_(net)
    with pytest.raises(
        ValueError,
        match=r"has no Linear, Conv1d/2d/3d, RNN, LSTM or GRU layer.*"
        r"can be Bayesian: none; its other parametrized layers: 1 \(LayerNorm\)",
    ):
        Normal().apply_(nn.Sequential(nn.ReLU(), nn.LayerNorm(3)))
    # a callable layers= picks layers by qualified name
    with pytest.warns(UserWarning, match=r"deterministic: norm \(LayerNorm\)\."):
        only_head = Normal().apply_(_Custom(), layers=lambda name, m: name == "head")
    assert [s.name for s in weight_sites(only_head)] == ["head.weight"]


def test_normal_prior_kl_with_mean_field_guide_is_the_closed_form():
    """KL(N(mu, sigma^2) || N(0, s^2)) summed over a layer, as TraceMeanField takes it."""
    prior_scale = 2.0
    torch.manual_seed(0)
    net = Normal(prior_scale).apply_(nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)))
    guide = MeanFieldGaussian(net, init_scale=0.3)
    trace = poutine.trace(net).get_trace(torch.zeros(1, 4))
    for s in weight_sites(net):
        q = guide.posterior(s.name)
        p = trace.nodes[s.name]["fn"]
        mu, sigma = q.base_dist.loc.detach(), q.base_dist.scale.detach()
        closed = (
            (prior_scale / sigma).log()
            + (sigma.square() + mu.square()) / (2 * prior_scale**2)
            - 0.5
        ).sum()
        kl = kl_divergence(q, p)
        assert kl.shape == ()  # summed over the weight tensor's event dims
        assert kl.item() == pytest.approx(closed.item(), rel=1e-4)
    with pytest.raises(ValueError, match="positive and finite"):
        Normal(0.0)


@pytest.mark.parametrize("shape", [(3, 4), (3, 2, 2, 2)], ids=["linear", "conv2d"])
def test_dropout_weight_moments_and_shared_input_masks(shape):
    """w = loc z / (1 - p), z ~ Bernoulli(1 - p) per input unit: mean loc, var loc^2 p/(1-p)."""
    p, n = 0.3, 100_000
    gen = torch.Generator().manual_seed(2)
    loc = torch.randn(shape, generator=gen, dtype=torch.float64) + 0.5
    q = DropoutWeight(loc, p)
    pyro.set_rng_seed(3)
    w = q.rsample((n,))
    var = loc.square() * p / (1 - p)
    torch.testing.assert_close(q.variance, var)
    # mean: 5 standard errors sqrt(var / n) per entry
    assert ((w.mean(0) - loc).abs() <= 5 * (var / n).sqrt()).all()
    # variance: u = z / (1 - p) has 4th central moment m4 = p^4/(1-p)^3 + p (times loc^4), so
    # the sample variance has standard error sqrt((m4 - var^2) / n); allow 5 of them
    m4 = (p**4 / (1 - p) ** 3 + p) * loc.pow(4)
    assert ((w.var(0) - var).abs() <= 5 * ((m4 - var.square()) / n).sqrt()).all()
    # one mask per input unit (dim 1), shared by all outputs (and kernel positions): every
    # ratio w / loc is 0 or 1 / (1 - p), constant along dim 0 (float64 rounding: 1e-12)
    ratio = w / loc
    assert (ratio - ratio[:, :1]).abs().max().item() < 1e-12
    is_zero = ratio.abs() < 1e-12
    is_kept = (ratio - 1 / (1 - p)).abs() < 1e-12
    assert (is_zero | is_kept).all()
    # the drop rate of the units is p: 5 binomial standard errors
    dropped = (ratio[:, 0, ...] == 0).double().mean().item()
    assert abs(dropped - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_dropout_weight_kl_is_the_expected_negative_log_prior():
    """KL(DropoutWeight || N(mu, s)) = E_q[-log N(w; mu, s)] (the mask entropy is dropped)."""
    p, n = 0.4, 200_000
    gen = torch.Generator().manual_seed(4)
    loc = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    mu = 0.3 * torch.randn(2, 3, generator=gen, dtype=torch.float64)
    s = torch.rand(2, 3, generator=gen, dtype=torch.float64) + 0.5
    q, prior = DropoutWeight(loc, p), dist.Normal(mu, s)
    kl = kl_divergence(q, prior)
    pyro.set_rng_seed(5)
    neg_log = -prior.log_prob(q.rsample((n,)))
    mc, se = neg_log.mean(0), neg_log.std(0) / math.sqrt(n)
    # per entry, 5 Monte Carlo standard errors
    assert ((kl - mc).abs() <= 5 * se).all(), (kl, mc, se)
    with pytest.raises(ValueError, match="Normal prior"):
        kl_divergence(q, ImproperLogUniform((2, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropoutWeight(loc, 1.0)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("prior", ["loguniform", "sbp"])
def test_a_copied_or_pickled_net_keeps_the_layer_class_and_its_forward(prior, how):
    """copy.deepcopy of a Bayesian net (an ensemble member, torch's AveragedModel) and a pickle
    round trip (torch.save of the module) keep the zoo's layer class and forward:
    PyroModule[nn.Linear]'s own __reduce__ would rebuild the plain PyroLinear, which draws one
    weight per minibatch instead of the LRT's (or SBP's) noise per example, and Pyro's renaming
    of a named prior function made pickling fail.  4000 identical input rows through the
    copy's training pass: the spread across rows of the first layer's output is the closed
    form (LRT: var_j = sum_i x_i^2 sigma2_ji; SBP: Var[theta_j] times the squared noiseless
    output), to 10 % (the estimate's sd is 2.2 %); the plain layer's spread would be 0."""
    from zoo.structured import SBP

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=gen)
    data = zoo.from_tensors(x, torch.arange(40) % 3)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    kw = {"prior": SBP()} if prior == "sbp" else {"prior": "loguniform", "guide": "sparse-vd"}
    zm = zoo.from_module(net, data=data, seed=0, **kw)
    if prior == "sbp":
        zm.guide.sites[0].set_(0.0, -1.0)  # a visible spread: sigma = e^-1
    if how == "deepcopy":
        twin = copy.deepcopy(zm)
        twin_model, twin_guide = twin.model, twin.guide
    else:
        twin_model, twin_guide = pickle.loads(pickle.dumps(zm.model)), zm.guide
    layer = twin_model.net[0]
    assert type(layer) is type(zm.model.net[0]) and type(layer).__name__ != "PyroLinear"
    rows = x[:1].expand(4000, 4).contiguous()
    outs = []
    hook = layer.register_forward_hook(lambda m, i, out: outs.append(out))
    model, guide = twin_model, twin_guide
    if zm.handler is not None:
        model, guide = zm.handler(model), zm.handler(guide)
    with torch.no_grad(), poutine.seed(rng_seed=1):
        poutine.replay(model, trace=poutine.trace(guide).get_trace(rows))(rows)
    hook.remove()
    with torch.no_grad():
        if prior == "loguniform":
            expected = (rows[0].square() * twin_guide.sites[0].log_sigma2.exp()).sum(-1)
        else:
            noise = twin_guide.sites[0].distribution()
            noise = getattr(noise, "base_dist", noise)
            expected = noise.variance * (x[0] @ layer.weight.T + layer.bias).square()
    torch.testing.assert_close(outs[0].var(0), expected, rtol=0.10, atol=0)


@pytest.mark.parametrize("name", ["lenet300-loguniform", "lenet5-normal", "lenet300-sbp"])
def test_a_catalog_net_pickles_with_its_layers_and_weights(name):
    """torch.save(zm.model) of a catalog BNN: the round trip keeps every layer's class (the
    zoo's, not Pyro's plain ones) and every parameter and buffer exactly."""
    info = zoo.DataInfo(input_shape=(1, 28, 28), num_classes=10, task="classification")
    zm = zoo.create_model(name, data=info)
    again = pickle.loads(pickle.dumps(zm.model))
    assert [type(m) for m in again.modules()] == [type(m) for m in zm.model.modules()]
    ours, theirs = zm.model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
