"""zoo.elbo.MeanFieldELBO against Pyro's TraceMeanField_ELBO, and the weight draws the local
reparameterization skips.

MeanFieldELBO only leaves out log-densities that TraceMeanField_ELBO computes and never reads,
so for the same seed both must give the same loss and the same gradients, up to float32
round-off (1e-6 relative).  Covered: sites with a closed-form KL (SparseVD's weights under
the log-uniform prior, Bayesian PCA's W) and a site without one (Bayesian PCA's z, whose
MultivariateNormal posterior has no registered KL to the model's Normal), which both
estimate by log p - log q.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from pyro.nn import PyroModule

from guides.dropout import LogVarianceNormal
from zoo import create_model, fit, load
from zoo.elbo import MeanFieldELBO
from zoo.handlers.lrt import LocalReparameterization
from zoo.priors import ImproperLogUniform, log_alpha, sparse_vd_kl


def _loss_and_grads(elbo, zm, x, y, n, seed):
    model, guide = zm.callables()
    for p in zm.parameters():
        p.grad = None
    pyro.set_rng_seed(seed)
    with pyro.validation_enabled(False):
        loss = elbo.loss_and_grads(model, guide, x, y, num_data=n)
    return loss, [p.grad.clone() for p in zm.parameters()]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("lenet300-loguniform", {"hidden": (32,)}),  # every latent site analytic
        ("lenet300-loguniform", {"hidden": (32,), "reparam": "shared"}),  # weights drawn
        ("bpca", {"latent_dim": 3}),  # W analytic, z by log p - log q
    ],
)
def test_same_loss_and_gradients_as_pyros_trace_mean_field_elbo(name, kwargs):
    data = load("digits")
    zm = create_model(name, data=data, seed=0, **kwargs)
    x = data.x_train[:64]
    y = data.y_train[:64] if zm.info.task != "unsupervised" else None
    n = data.num_train
    ours = _loss_and_grads(MeanFieldELBO(), zm, x, y, n, seed=5)
    pyros = _loss_and_grads(TraceMeanField_ELBO(), zm, x, y, n, seed=5)
    other = _loss_and_grads(MeanFieldELBO(), zm, x, y, n, seed=6)
    assert ours[0] == pytest.approx(pyros[0], rel=1e-6)
    assert ours[0] != other[0]  # the seed matters, so equal seeds were compared
    for a, b in zip(ours[1], pyros[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * float(b.abs().max()) + 1e-12)


def test_with_validation_on_it_is_pyros_estimator():
    data = load("digits")
    zm = create_model("lenet300-loguniform", data=data, seed=0, hidden=(16,))
    model, guide = zm.callables()
    x, y = data.x_train[:32], data.y_train[:32]
    losses = []
    for elbo in (MeanFieldELBO(), TraceMeanField_ELBO()):
        pyro.set_rng_seed(1)
        with pyro.validation_enabled(True):
            losses.append(elbo.loss(model, guide, x, y, num_data=data.num_train))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


class _Toy(PyroModule):
    def forward(self):
        w = pyro.sample("w", dist.Cauchy(0.0, 1.0).expand([3]).to_event(1))
        return w


def _toy_guide():
    q = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    return pyro.sample("w", q, infer={"weight": True})


def test_an_undrawn_weight_without_a_closed_form_kl_is_refused():
    lrt = LocalReparameterization(draw_weights=False)
    for validate in (False, True):
        with pyro.validation_enabled(validate), pytest.raises(ValueError, match="no closed"):
            MeanFieldELBO().loss(lrt(_Toy()), lrt(_toy_guide))


def test_without_draws_the_value_is_the_mean_and_no_noise_is_drawn():
    lrt = LocalReparameterization(draw_weights=False)
    loc = torch.randn(4, 3)
    q = LogVarianceNormal(loc, torch.full((4, 3), -2.0)).to_event(2)

    def guide():
        return pyro.sample("net.0.weight", q, infer={"weight": True})

    torch.manual_seed(0)
    state = torch.get_rng_state()
    values = [lrt(guide)() for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(values[0], loc) and values[0] is not values[1]  # fresh objects: lookups
    # drawn (the default): a sample, not the mean
    assert not torch.equal(LocalReparameterization()(guide)(), loc)


def test_log_variance_normal_is_the_normal_and_keeps_the_sparse_vd_kl():
    loc = torch.randn(50)
    log_var = torch.linspace(-12, 4, 50)
    q = LogVarianceNormal(loc, log_var)
    plain = dist.Normal(loc, (0.5 * log_var).exp())
    value = torch.randn(50)
    torch.testing.assert_close(q.log_prob(value), plain.log_prob(value))
    torch.testing.assert_close(q.variance, plain.variance)
    p = ImproperLogUniform((50,))
    expected = sparse_vd_kl(log_alpha(loc, plain.scale).clamp(-8, 8))
    torch.testing.assert_close(torch.distributions.kl_divergence(q, p), expected)
    # the registered pair wins over (Normal, ImproperLogUniform): the same value
    torch.testing.assert_close(
        torch.distributions.kl_divergence(q, p), torch.distributions.kl_divergence(plain, p)
    )


def test_the_lrt_entries_refuse_an_elbo_that_would_read_undrawn_weights():
    data = load("digits")
    zm = create_model("lenet300-loguniform", data=data, hidden=(8,))
    with pytest.raises(ValueError, match="reparam='shared'"):
        fit(zm, data, num_epochs=1, elbo="trace", progress=False)
    shared = create_model("lenet300-loguniform", data=data, hidden=(8,), reparam="shared")
    result = fit(shared, data, num_epochs=1, elbo="trace", progress=False, eval_every=0)
    assert result.steps > 0
