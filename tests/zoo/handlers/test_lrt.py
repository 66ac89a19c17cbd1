"""The local reparameterization trick (zoo.handlers.lrt) against the moments of sampled weights.

For a Gaussian weight W ~ N(loc, scale^2) and a fixed input x, a Linear layer's output is exactly
Gaussian with mean x @ loc.T + bias and variance (x^2) @ (scale^2).T per example and unit (a
ConvNd's, with its stride, padding, dilation and groups: conv(x, loc) + bias and
conv(x^2, scale^2); checked for Conv1d, Conv2d and Conv3d).  The three ways of drawing outputs --
LRT, a weight per example, one weight per minibatch -- must all have these moments.

Tolerances: Monte Carlo, 5 standard errors per entry (a false alarm has probability < 1e-6 per
entry; all draws are seeded).  The mean's standard error is sqrt(var / n); the sample variance's
is sqrt((m4 - s^4) / n) with m4 the sample's fourth central moment (2 s^4 / n for a Gaussian).
"""

import gc
import math
import weakref

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

import zoo  # noqa: F401  (module-local Pyro params, as everywhere in the package)
from guides.dropout import DropoutWeight
from zoo.handlers.lrt import LocalReparameterization
from zoo.priors import Normal

pytestmark = pytest.mark.usefixtures("one_thread")


REPS = 5000  # copies of each example in one LRT / per-example pass
DRAWS = 2000  # separate weight draws without a handler


def _assert_moments(samples, mean, var, k=5.0):
    """Sample mean and variance over dim 0 within k standard errors of the closed forms."""
    n = samples.shape[0]
    m = samples.mean(0)
    assert ((m - mean).abs() <= k * (var / n).sqrt()).all(), (m - mean).abs().max()
    centred = samples - m
    s2 = centred.square().mean(0)
    m4 = centred.pow(4).mean(0)
    se_var = ((m4 - s2.square()).clamp_min(0) / n).sqrt()
    assert ((s2 - var).abs() <= k * se_var).all(), ((s2 - var).abs() / se_var).max()


KINDS = ["linear", "conv1d", "conv2d", "conv3d"]


def _layer(kind):
    """A Bayesian layer (its weight is the site "weight"), a Gaussian guide and an input.

    The Conv1d and Conv3d layers have groups, stride, padding and dilation all non-trivial.
    """
    gen = torch.Generator().manual_seed(0)
    if kind == "linear":
        layer = nn.Linear(5, 3)
        x = torch.randn(4, 5, generator=gen)
    elif kind == "conv1d":
        layer = nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2)
        x = torch.randn(1, 4, 9, generator=gen)  # 6 channels x 5 positions out
    elif kind == "conv2d":
        layer = nn.Conv2d(2, 3, 3, padding=1)
        x = torch.randn(1, 2, 5, 5, generator=gen)
    else:
        layer = nn.Conv3d(4, 6, 2, stride=(1, 2, 2), padding=1, dilation=(1, 2, 2), groups=2)
        x = torch.randn(1, 4, 3, 5, 5, generator=gen)  # 6 channels x 4 x 3 x 3 out
    shape = layer.weight.shape
    with torch.no_grad():
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))
    Normal(1.0).apply_(layer)
    loc = torch.randn(shape, generator=gen)
    scale = 0.2 + torch.rand(shape, generator=gen)
    return layer, loc, scale, x


def _conv(layer, x, weight, bias=None):
    """The plain convolution of ``layer`` (its stride, padding, dilation, groups)."""
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(layer.kernel_size)]
    return conv(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def _closed_form(layer, loc, scale, x):
    if isinstance(layer, nn.Linear):
        return F.linear(x, loc, layer.bias), F.linear(x.square(), scale.square())
    return _conv(layer, x, loc, layer.bias), _conv(layer, x.square(), scale.square())


def _gaussian_guide(loc, scale):
    return lambda: pyro.sample("weight", dist.Normal(loc, scale).to_event(loc.dim()))


def _run(handler, layer, guide, x):
    """One guide draw replayed into the layer, both inside ``handler`` (if any)."""
    wrap = (lambda f: f) if handler is None else handler
    trace = poutine.trace(wrap(guide)).get_trace()
    return poutine.replay(wrap(layer), trace=trace)(x)


def _repeated(x, reps):
    return x.repeat(reps, *([1] * (x.dim() - 1)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["lrt", "per_example"])
def test_handler_outputs_have_the_moments_of_sampled_weights(kind, mode):
    """LRT and per-example draws: exact Gaussian moments, independent across examples."""
    layer, loc, scale, x = _layer(kind)
    mean, var = _closed_form(layer, loc, scale, x)
    guide = _gaussian_guide(loc, scale)
    handler = LocalReparameterization(mode)
    reps = REPS if kind == "linear" else REPS // 5  # conv: 30 to 216 outputs per example
    with torch.no_grad():
        out = _run(handler, layer, guide, _repeated(x, reps))
    out = out.reshape(reps, *mean.shape)
    # LRT adds 1e-8 to the variance, far below the resolution here
    _assert_moments(out, mean, var)
    # rows with identical inputs are independent draws: no two copies agree
    assert (out[0] != out[1]).all()


@pytest.mark.parametrize("kind", KINDS)
def test_shared_weight_outputs_have_the_same_moments(kind):
    """Without a handler one weight serves the whole batch; over draws the moments agree."""
    layer, loc, scale, x = _layer(kind)
    mean, var = _closed_form(layer, loc, scale, x)
    guide = _gaussian_guide(loc, scale)
    twice = _repeated(x, 2)
    draws = []
    with torch.no_grad():
        for _ in range(DRAWS):
            out = _run(None, layer, guide, twice)
            first, second = out.chunk(2)
            # the weight is shared: identical inputs give bit-identical outputs
            assert torch.equal(first, second)
            draws.append(first)
    _assert_moments(torch.stack(draws), mean, var)


@pytest.mark.parametrize("kind", KINDS)
def test_no_noise_on_the_bias(kind):
    """The bias is deterministic: it shifts the output and leaves the noise unchanged."""
    layer, loc, _, x = _layer(kind)
    x = _repeated(x, 100)
    mean, _ = _closed_form(layer, loc, torch.zeros_like(loc), x)
    tiny = _gaussian_guide(loc, torch.full_like(loc, 1e-20))
    with torch.no_grad():
        lrt_out = _run(LocalReparameterization(), layer, tiny, x)
        per_example = _run(LocalReparameterization("per_example"), layer, tiny, x)
    # With scale -> 0 only the documented jitter is left: std sqrt(1e-8) = 1e-4, so every entry
    # lies within 7 of its standard deviations of the mean (bias included).
    assert (lrt_out - mean).abs().max().item() < 7e-4
    # A weight per example has no jitter: float32 rounding only (1e-5).
    torch.testing.assert_close(per_example, mean, rtol=1e-5, atol=1e-5)

    # Same noise, shifted bias: the outputs move by exactly the shift (float32 rounding at
    # magnitude 100: 1e-4), so the variance does not depend on the bias.
    layer, loc, scale, x = _layer(kind)
    guide = _gaussian_guide(loc, scale)
    handler = LocalReparameterization()
    with torch.no_grad():
        pyro.set_rng_seed(7)
        before = _run(handler, layer, guide, x)
        layer.bias += 100.0
        pyro.set_rng_seed(7)
        after = _run(handler, layer, guide, x)
    shift = torch.full_like(before, 100.0)
    torch.testing.assert_close(after - before, shift, rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_posterior_draws_per_example_input_masks(kind):
    """DropoutWeight under LRT: a mask per example and input unit, the closed-form moments;
    without a handler, one weight draw per batch (masks per group and unit) has the same."""
    p = 0.3
    layer, loc, _, x = _layer(kind)
    q = DropoutWeight(loc, p, groups=getattr(layer, "groups", 1))
    guide = lambda: pyro.sample("weight", q.to_event(loc.dim()))  # noqa: E731
    reps = REPS if kind == "linear" else REPS // 5
    with torch.no_grad():
        out = _run(LocalReparameterization(), layer, guide, _repeated(x, reps))
        shared = torch.stack([_run(None, layer, guide, x)[0] for _ in range(DRAWS)])
    mean, _ = _closed_form(layer, loc, loc, x)
    if kind == "linear":
        # out_o = sum_i x_i loc_oi z_i / (1 - p) + b, independent z_i: the variance of the
        # scaled Bernoulli, p / (1 - p), times sum_i x_i^2 loc_oi^2
        var = F.linear(x.square(), loc.square()) * p / (1 - p)
    else:
        # a channel's mask is shared by all kernel taps: the channel's whole contribution
        # a_c = conv(x_c, loc) (x zero but in channel c) is dropped at once, independently of
        # the other channels (in every group), so Var = p / (1 - p) * sum_c a_c^2
        eye = torch.eye(x.shape[1]).reshape(x.shape[1], 1, x.shape[1], *([1] * (x.dim() - 2)))
        per_channel = [_conv(layer, x * eye[c], loc) for c in range(x.shape[1])]
        var = sum(a.square() for a in per_channel) * p / (1 - p)
    out = out.reshape(reps, *mean.shape)
    _assert_moments(out, mean, var)
    _assert_moments(shared, mean[0], var[0])
    # per example: copies of one input see different masks (with 5000 copies, the chance that
    # all agree is nil), so the outputs differ across copies
    assert (out[:, 0] != out[0, 0]).any()


def test_invalid_mode_is_refused():
    """Only the two documented modes exist."""
    with pytest.raises(ValueError, match="mode must be one of"):
        LocalReparameterization("shared")


def test_handler_keeps_no_weight_alive():
    """The handler holds weights weakly: once the traces go, so do its entries."""
    layer, loc, scale, x = _layer("linear")
    guide = _gaussian_guide(loc, scale)
    handler = LocalReparameterization()
    trace = poutine.trace(handler(guide)).get_trace()
    out = poutine.replay(handler(layer), trace=trace)(x)
    value = trace.nodes["weight"]["value"]
    assert handler.posterior(value) is not None
    assert len(handler._posteriors) == 1
    ref = weakref.ref(value)
    del trace, out, value
    gc.collect()
    assert ref() is None  # nothing (the handler included) kept the weight alive
    # the dead entry goes at the next exit of the handler, when a new sample is recorded
    trace = poutine.trace(handler(guide)).get_trace()
    assert len(handler._posteriors) == 1
    assert handler.posterior(trace.nodes["weight"]["value"]) is not None
    del trace
    gc.collect()
    with handler:
        pass
    assert len(handler._posteriors) == 0


@pytest.mark.parametrize("mode", ["lrt", "per_example"])
def test_gradient_estimator_is_unbiased(mode):
    """E[d sum(out^2) / d(loc, scale)] is the gradient of sum(mean^2 + var), in closed form.

    d/dloc = 2 mean.T @ x and d/dscale = 2 scale * ((x^2).T summed against 1), per unit.
    """
    layer, loc0, scale0, x = _layer("linear")
    loc = loc0.clone().requires_grad_()
    scale = scale0.clone().requires_grad_()
    guide = _gaussian_guide(loc, scale)
    handler = LocalReparameterization(mode)
    reps, rounds = 200, 100
    xr = _repeated(x, reps)
    estimates = []
    for _ in range(rounds):
        loss = _run(handler, layer, guide, xr).square().sum() / reps
        estimates.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, (loc, scale))]))
    estimates = torch.stack(estimates)
    with torch.no_grad():
        mean = F.linear(x, loc, layer.bias)
        grad_loc = 2 * mean.T @ x
        grad_scale = 2 * scale * x.square().sum(0)
    exact = torch.cat([grad_loc.flatten(), grad_scale.flatten()])
    # 5 standard errors of the mean over the independent rounds (plus float32 slack)
    se = estimates.std(0) / math.sqrt(rounds)
    err = (estimates.mean(0) - exact).abs()
    assert (err <= 5 * se + 1e-4).all(), (err / se).max()


def _sequence_layer():
    """A Linear layer applied to (batch, time, features) inputs, as in a sequence model."""
    gen = torch.Generator().manual_seed(3)
    layer = nn.Linear(5, 3)
    Normal(1.0).apply_(layer)
    x = torch.randn(1, 2, 5, generator=gen)  # one example, two time steps
    loc = torch.randn(3, 5, generator=gen)
    return layer, loc, x


@pytest.mark.parametrize("mode", ["lrt", "per_example"])
def test_gaussian_moments_on_sequence_inputs(mode):
    """Linear on (B, T, F) inputs: per (example, step, unit) the same closed-form moments."""
    layer, loc, x = _sequence_layer()
    scale = 0.5 * loc.abs() + 0.1
    guide = _gaussian_guide(loc, scale)
    with torch.no_grad():
        out = _run(LocalReparameterization(mode), layer, guide, _repeated(x, REPS))
    mean, var = _closed_form(layer, loc, scale, x)
    _assert_moments(out.reshape(REPS, *mean.shape), mean, var)


def test_dropout_moments_on_sequence_inputs():
    """DropoutWeight under LRT on (B, T, F) inputs: a mask per example and input feature.

    A weight draw w = loc diag(z) / (1 - p) per example gives, at each step, variance
    p / (1 - p) * sum_i x_i^2 loc_oi^2 (as for 2-D inputs).
    """
    p = 0.3
    layer, loc, x = _sequence_layer()
    guide = lambda: pyro.sample("weight", DropoutWeight(loc, p).to_event(2))  # noqa: E731
    with torch.no_grad():
        out = _run(LocalReparameterization(), layer, guide, _repeated(x, REPS))
    mean = F.linear(x, loc, layer.bias)
    var = F.linear(x.square(), loc.square()) * p / (1 - p)
    _assert_moments(out.reshape(REPS, *mean.shape), mean, var)
