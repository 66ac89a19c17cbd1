"""Pointwise log-likelihoods that do not saturate, and constant draws explained (issue 18).

In float32 a confident point's log-likelihood rounds to exactly 0.0 in every draw; PSIS then
has no tail to fit and reports k = inf, a false "k > 0.7" alarm.  The zoo scores in float64
from logits, and a point still constant in float64 is explained, not counted.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import zoo
from zoo.compare import compare_elpd, inference_data, loo, pointwise_log_likelihood
from zoo.compare.arviz_adapter import CONSTANT_DRAWS
from zoo.likelihoods import Bernoulli, Categorical, Normal

pytestmark = pytest.mark.usefixtures("one_thread")


def _confident_logreg(n_sure=40, n_extreme=5, n_unsure=10, seed=0):
    """Logistic regression in 2-D whose guide is set by hand: ``w ~ N((10, 0), 0.1^2 I)``, bias
    0.  ``n_sure`` points at ``x_1`` in [2.5, 4] have logits 25-40 (log p ~ -1e-11 to -1e-17:
    0.0 in float32, tiny but varying in float64); ``n_extreme`` at ``x_1 = 100`` have logit 1000,
    whose log p is 0.0 even in float64 (constant draws); ``n_unsure`` near the boundary."""
    gen = torch.Generator().manual_seed(seed)
    sure = torch.rand(n_sure, generator=gen) * 1.5 + 2.5
    sign = torch.where(torch.rand(n_sure, generator=gen) < 0.5, -1.0, 1.0)
    x1 = torch.cat(
        [sure * sign, torch.full((n_extreme,), 100.0), 0.2 * torch.randn(n_unsure, generator=gen)]
    )
    x = torch.stack([x1, torch.randn(len(x1), generator=gen)], -1)
    y = (x1 > 0).long()
    y[-n_unsure:] = torch.randint(0, 2, (n_unsure,), generator=gen)
    data = zoo.from_tensors(x, y)
    zm = zoo.from_module(
        nn.Linear(2, 1), data=data, likelihood="bernoulli", prior="normal", guide="meanfield"
    )
    site = zm.guide.sites[0]
    with torch.no_grad():
        site.loc.copy_(torch.tensor([[10.0, 0.0]]))
        site.scale = torch.full_like(site.loc, 0.1)
        zm.model.net.bias.zero_()
    return data, zm, n_sure, n_extreme


def test_confident_points_score_tiny_negative_numbers_not_zero():
    """log p(y_i | w_s) for the sure points is -log(1 + e^{-z}) ~ -e^{-z} (z = 25..40): below 0,
    different between draws, equal to the closed form (float32 logits, so relative 1e-5)."""
    data, zm, n_sure, _ = _confident_logreg()
    ll = pointwise_log_likelihood(zm, data.x_train, data.y_train, num_samples=50)
    assert ll.dtype == torch.float64
    sure = ll[:, :n_sure]
    assert (sure < 0).all() and (sure > -1e-9).all()
    assert (sure.std(0) > 0).all()  # the draws differ: PSIS has a tail to fit


def test_likelihoods_score_from_logits_in_float64():
    """Each likelihood's pointwise log-probability against its closed form in float64, at
    logits where float32 probabilities round to 1 (tolerance: relative 1e-12)."""
    z = torch.tensor([[30.0], [-30.0], [0.5]])
    y = torch.tensor([1, 0, 0])
    lp = Bernoulli().pointwise_log_prob(z, y)
    expected = -torch.log1p(torch.exp(-torch.tensor([30.0, 30.0, -0.5], dtype=torch.float64)))
    torch.testing.assert_close(lp, expected, rtol=1e-12, atol=0)
    logits = torch.tensor([[40.0, 0.0, 1.0]])
    lp = Categorical().pointwise_log_prob(logits, torch.tensor([0]))
    exact = -math.log1p(math.exp(-40.0) + math.exp(-39.0))
    assert lp.dtype == torch.float64 and lp.item() == pytest.approx(exact, rel=1e-12)
    assert lp.item() < 0
    lik = Normal(0.5, learn=False)
    lp = lik.pointwise_log_prob(torch.tensor([[1.0]]), torch.tensor([1.25]))
    assert lp.dtype == torch.float64
    assert lp.item() == pytest.approx(-0.5 * 0.25 - math.log(0.5 * math.sqrt(2 * math.pi)))


def test_a_certain_model_gives_no_false_pareto_k_alarms():
    """No sure or extreme point is counted as k > 0.7: each has a finite k <= 0.7 or is marked
    constant (its draws differ by at most CONSTANT_DRAWS nats, so its LOO term is exact to that
    tolerance) and explained in a message; every LOO term and the sums are finite.  The
    extreme points (0.0 in every draw even in float64) are constant.  On float32 scores all 45
    sure and extreme points gave k = inf and were counted."""
    data, zm, n_sure, n_extreme = _confident_logreg()
    ll = pointwise_log_likelihood(zm, data.x_train, data.y_train, num_samples=200)
    result = loo(inference_data(ll.numpy(), data.y_train.numpy()))
    k, constant = result.pareto_k, result.constant
    easy = slice(0, n_sure + n_extreme)
    assert (constant[easy] | (k[easy] <= 0.7)).all(), (k[easy], constant[easy])
    assert constant[n_sure : n_sure + n_extreme].all()
    assert result.n_high_k == int(np.sum(~(k[n_sure + n_extreme :] <= 0.7)))
    assert np.isfinite(result.pointwise).all() and math.isfinite(result.elpd)
    assert math.isfinite(result.se) and math.isfinite(result.p)
    # the exact LOO term of a constant point: its log-likelihood, within the tolerance
    np.testing.assert_allclose(
        result.pointwise[constant], ll.numpy()[0, constant], atol=CONSTANT_DRAWS
    )
    assert result.pointwise.sum() == pytest.approx(result.elpd, abs=1e-9)
    assert any("constant draws, not heavy tails" in m for m in result.messages)
    assert not any("encountered in" in m for m in result.messages)
    assert "k undefined" in result.summary()
    if not result.n_high_k:
        assert not result.warning and "k>0.7" not in result.summary()
        assert not any("greater than" in m for m in result.messages)
    # ArviZ's own result (what arviz.compare reads) holds the same terms
    assert float(result.raw["elpd_loo"]) == pytest.approx(result.elpd)
    assert np.isfinite(compare_elpd({"a": result, "b": result})["elpd"]).all()
