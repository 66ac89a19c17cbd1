"""Likelihoods (zoo.likelihoods): Bernoulli against logistic regression's closed form, Normal's
target shapes, the choice of a default, and the checks against the data."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from torch import nn

import zoo
from zoo.data import DataInfo, from_tensors
from zoo.likelihoods import Bernoulli, Categorical, Normal, class_probs, make_likelihood
from zoo.models.weights import pointwise_log_likelihood

pytestmark = pytest.mark.usefixtures("one_thread")

BINARY = DataInfo(input_shape=(3,), task="classification", num_classes=2)
REGRESSION = DataInfo(input_shape=(3,), task="regression")


def _binary_data(n=40, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=gen) > 0).long()
    return from_tensors(x, y)


def test_bernoulli_pointwise_log_lik_is_logistic_regression():
    """log p(y | x, w) = y z - log(1 + e^z), z = w.x + b, for fixed weights: float32 against the
    float64 closed form, tolerance 1e-5 (a few ulps of the logits' size)."""
    data = _binary_data()
    zm = zoo.from_module(nn.Linear(3, 1), data=data, prior="normal", likelihood="bernoulli", seed=0)
    w = torch.tensor([[1.5, -0.7, 0.3]])
    with torch.no_grad():
        zm.model.net.bias.fill_(0.2)
    draws = pointwise_log_likelihood(
        zm, data.x_train, data.y_train, num_samples=1, samples={"net.weight": w[None]}
    )
    z = data.x_train.double() @ w.double().T.squeeze(-1) + 0.2
    y = data.y_train.double()
    expected = y * z - torch.nn.functional.softplus(z)
    torch.testing.assert_close(draws.log_lik[0], expected, atol=1e-5, rtol=0)
    # the predictive mean is (1 - p, p) per example
    p = torch.sigmoid(z)
    torch.testing.assert_close(draws.predictive_mean[:, 1], p, atol=1e-6, rtol=0)
    torch.testing.assert_close(draws.predictive_mean.sum(-1), torch.ones_like(p), atol=1e-6, rtol=0)


def test_bernoulli_and_two_class_softmax_agree_on_the_same_logit_difference():
    """A 2-class softmax with logits (0, z) is the Bernoulli with logit z: identical class
    log-probabilities (tolerance 1e-6)."""
    z = torch.linspace(-30, 30, 61)[:, None]
    bern = Bernoulli().class_log_probs(z)
    cat = Categorical().class_log_probs(torch.cat([torch.zeros_like(z), z], -1))
    torch.testing.assert_close(bern, cat, atol=1e-6, rtol=0)
    assert torch.isfinite(bern).all()  # logsigmoid, never log(sigmoid): no -inf at |z| = 30


def test_the_observed_site_scales_by_n_over_b():
    """Inside the data plate the log-likelihood is scaled by N/B: the model trace's obs term equals
    (N/B) times the closed-form Bernoulli sum (tolerance 1e-4 relative)."""
    data = _binary_data(n=40)
    zm = zoo.from_module(nn.Linear(3, 1), data=data, prior="normal", likelihood="bernoulli")
    x, y = data.x_train[:10], data.y_train[:10]
    guide_trace = poutine.trace(zm.guide).get_trace(x)
    trace = poutine.trace(poutine.replay(zm.model, trace=guide_trace)).get_trace(x, y, 40)
    trace.compute_log_prob()
    w = guide_trace.nodes["net.weight"]["value"]
    z = (x @ w.T).squeeze(-1) + zm.model.net.bias
    expected = 4.0 * (y * z - torch.nn.functional.softplus(z)).sum()
    torch.testing.assert_close(trace.nodes["obs"]["log_prob_sum"], expected, rtol=1e-4, atol=0)


def test_normal_refuses_n_by_1_targets_that_would_broadcast():
    lik = Normal()
    out = torch.zeros(5, 1)
    with pyro.plate("data", 5), pytest.raises(ValueError, match=r"targets of shape \(5, 1\)"):
        lik(out, torch.zeros(5, 1))
    with pyro.plate("data", 5):
        fn = lik(out, torch.zeros(5))
    assert fn.batch_shape == (5,)


def test_normal_fixed_noise_is_a_buffer_and_its_log_lik_is_closed_form():
    lik = Normal(0.5, learn=False)
    assert list(lik.parameters()) == [] and float(lik.noise) == 0.5
    out, y = torch.tensor([[0.0], [1.0]]), torch.tensor([0.5, 0.0])
    lp = lik.distribution(out).log_prob(y)
    expected = -0.5 * ((y - out[:, 0]) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(lp, expected, atol=1e-6, rtol=0)
    learned = Normal(0.5)
    assert [p.shape for p in learned.parameters()] == [torch.Size([])]


def test_defaults_and_refusals():
    ten = DataInfo(input_shape=(3,), task="classification", num_classes=10)
    assert isinstance(make_likelihood(None, ten), Categorical)
    assert isinstance(make_likelihood(None, REGRESSION), Normal)
    assert make_likelihood("bernoulli", BINARY).out_features(BINARY) == 1
    with pytest.raises(ValueError, match=r"needs binary labels.*10"):
        make_likelihood("bernoulli", ten)
    with pytest.raises(ValueError, match=r"fits regression data.*'classification'"):
        make_likelihood("normal", ten)
    with pytest.raises(ValueError, match=r"likelihood.*bernouli"):
        make_likelihood("bernouli", BINARY)
    with pytest.raises(ValueError, match="not a Categorical or Bernoulli"):
        class_probs(pyro.distributions.Normal(0.0, 1.0))


def test_a_net_with_the_wrong_number_of_outputs_is_refused_when_built():
    data = _binary_data()
    with pytest.raises(ValueError, match=r"outputs of shape \(2, 2\).*needs \(N, 1\)"):
        zoo.from_module(nn.Linear(3, 2), data=data, prior="normal", likelihood="bernoulli")
