"""Bayesian neural networks (zoo.models.bnn): the ELBO's scale, pruning, export and training."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from pyro.nn import PyroModule
from torch.distributions import kl_divergence

import zoo
from zoo import create_model, fit, from_tensors
from zoo.handlers import KLAnnealing
from zoo.models.bnn import BNNConfig, export_pruned, layer_report, pruned_state_dict
from zoo.models.weights import mean_net_outputs, predict
from zoo.priors import sparse_vd_kl

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(shape, n=20, classes=3, seed=0, n_test=10):
    gen = torch.Generator().manual_seed(seed)
    return from_tensors(
        torch.rand(n, *shape, generator=gen),
        torch.arange(n) % classes,
        x_test=torch.rand(n_test, *shape, generator=gen),
        y_test=torch.arange(n_test) % classes,
    )


def _set_log_alpha(guide, fractions, seed=0):
    """Give a SparseVD guide random theta and log alpha = +5 (pruned) or -5 (kept).

    Returns the kept masks, drawn with the given fraction of pruned weights per layer.
    """
    gen = torch.Generator().manual_seed(seed)
    kept = {}
    with torch.no_grad():
        for site, frac in zip(guide.sites, fractions, strict=True):
            shape = site.theta.shape
            site.theta.copy_(torch.randn(shape, generator=gen))
            prune = torch.rand(shape, generator=gen) < frac
            target = torch.where(prune, 5.0, -5.0)
            site.log_sigma2.copy_(target + (site.theta.square() + 1e-8).log())
            kept[site.site] = ~prune
    return kept


def test_elbo_scales_the_likelihood_by_n_over_b_and_the_kl_by_beta():
    """loss = -(N/B) sum_batch log p(y|x, w) + beta KL(q || p), w the guide's draw."""
    gen = torch.Generator().manual_seed(0)
    n, b = 40, 8
    x, y = torch.randn(n, 6, generator=gen), torch.arange(n) % 3
    zm = create_model("logreg", data=from_tensors(x, y), seed=0, reparam="shared", init_scale=0.2)
    assert zm.handler is None  # one weight draw per minibatch: the loss is a function of it
    model, guide = zm.callables()
    xb, yb = x[:b], y[:b]
    q = zm.guide.posterior("net.1.weight").base_dist
    mu, sigma = q.loc.detach(), q.scale.detach()
    # KL(N(mu, sigma^2) || N(0, 1)) in closed form, summed over the weights
    kl = ((1.0 / sigma).log() + (sigma.square() + mu.square()) / 2 - 0.5).sum().item()

    def loglik(xs, ys, seed):
        pyro.set_rng_seed(seed)  # the ELBO runs the guide first: the same draw
        w = poutine.trace(guide).get_trace(xs, ys, num_data=n).nodes["net.1.weight"]["value"]
        logits = xs @ w.T + zm.model.net[1].bias
        return logits.log_softmax(-1).gather(-1, ys[:, None]).sum().item()

    elbo = TraceMeanField_ELBO()
    # float32 sums of ~100 terms: 1e-4 relative
    pyro.set_rng_seed(1)
    loss = elbo.loss(model, guide, xb, yb, num_data=n)
    assert loss == pytest.approx(-(n / b) * loglik(xb, yb, 1) + kl, rel=1e-4)
    # the whole data set: scale 1
    pyro.set_rng_seed(2)
    loss = elbo.loss(model, guide, x, y, num_data=n)
    assert loss == pytest.approx(-loglik(x, y, 2) + kl, rel=1e-4)
    # the trainer's KL warm-up scales the latent sites of model and guide: beta * KL only
    anneal = KLAnnealing()
    anneal.beta = 0.3
    pyro.set_rng_seed(3)
    loss = elbo.loss(anneal(model), anneal(guide), xb, yb, num_data=n)
    assert loss == pytest.approx(-(n / b) * loglik(xb, yb, 3) + 0.3 * kl, rel=1e-4)


def test_pruning_masks_mean_weights_and_layer_report():
    """Weights with log alpha > 3 are pruned: masks, zeroed means and the report's counts."""
    data = _tiny((1, 3, 3))
    zm = create_model("lenet300-loguniform", data=data, hidden=(4,), seed=0)
    guide = zm.guide
    kept = _set_log_alpha(guide, (0.3, 0.6))
    for name, la in guide.log_alpha().items():
        # log alpha = log sigma^2 - log(theta^2 + 1e-8) is +-5 by construction (float32: 1e-5)
        expected = torch.where(kept[name], -5.0, 5.0)
        torch.testing.assert_close(la, expected, rtol=0, atol=1e-5)
    masks, means = guide.masks(), guide.mean_weights()
    for site in guide.sites:
        assert torch.equal(masks[site.site], kept[site.site])
        expected = torch.where(kept[site.site], site.theta, torch.zeros_like(site.theta))
        assert torch.equal(means[site.site], expected)  # exact zeros, exact theta
        assert torch.equal(guide.mean_weights(threshold=None)[site.site], site.theta)

    report = layer_report(zm)
    counts = [(m.numel(), int(m.sum())) for m in kept.values()]
    assert list(report["layer"]) == ["net.1.weight", "net.3.weight", "total (Bayesian weights)"]
    total, total_kept = sum(c[0] for c in counts), sum(c[1] for c in counts)
    for (_, row), (size, k) in zip(report.iterrows(), [*counts, (total, total_kept)], strict=True):
        assert (row["weights"], row["kept"]) == (size, k)
        # hand counts: sparsity 1 - k / size, compression |W| / |W != 0| (exact ratios, 1e-9)
        assert row["sparsity_%"] == pytest.approx(100 * (1 - k / size), abs=1e-9)
        assert row["compression"] == pytest.approx(size / k, rel=1e-9)
    assert 0 < total_kept < total
    # a looser threshold keeps everything (all log alpha are <= 5)
    loose = layer_report(zm, threshold=6.0)
    assert (loose["sparsity_%"] == 0).all() and (loose["compression"] == 1).all()
    # evaluate reports the same totals
    metrics = zm.evaluate(data, "test")
    assert metrics["sparsity"] == pytest.approx(1 - total_kept / total, abs=1e-9)
    assert metrics["compression"] == pytest.approx(total / total_kept, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "shape"),
    [("lenet300-loguniform", (1, 8, 8)), ("lenet5-loguniform", (1, 28, 28))],
)
def test_export_round_trip(tmp_path, name, shape):
    """export_pruned and pruned_state_dict reproduce the masked mean net exactly (1e-5)."""
    data = _tiny(shape, n=6, classes=10, n_test=4)
    zm = create_model(name, data=data, seed=0)
    kept = _set_log_alpha(zm.guide, [0.5] * len(zm.guide.sites))
    x = data.x_test
    expected = mean_net_outputs(zm, x)

    net = export_pruned(zm)
    assert not any(isinstance(m, PyroModule) for m in net.modules())
    assert not net.training
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)
        for site, mask in kept.items():  # the pruned weights are exact zeros
            w = net.get_parameter(site.removeprefix("net."))
            assert torch.equal(w == 0, ~mask)

    path = tmp_path / "pruned.pt"
    torch.save(pruned_state_dict(zm), path)
    plain = zm.model.plain_net()
    plain.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), expected, rtol=1e-5, atol=1e-5)
    # the masked mean net is not the unmasked one: pruning did change the outputs
    unmasked = mean_net_outputs(zm, x, threshold=10.0)
    assert (unmasked - expected).abs().max() > 1e-3


def test_sparse_vd_on_digits_prunes_and_classifies():
    """A short SparseVD run on digits: most weights pruned, far above chance (0.1)."""
    data = zoo.load("digits")
    zm = create_model("lenet300-loguniform", data=data, hidden=(100,), seed=0)
    fit(
        zm,
        data,
        num_epochs=20,
        batch_size=100,
        lr=1e-2,
        kl_warmup_start=0,
        kl_warmup_end=5,
        lr_schedule="constant",
        progress=False,
        eval_every=0,
    )
    metrics = zm.evaluate(data, "test")
    # measured: sparsity 0.92 (94% / 77% per layer), compression 11.9, accuracy 0.956
    assert metrics["sparsity"] > 0.5
    assert metrics["acc"] > 0.8 and metrics["mc_acc"] > 0.8
    # acc is the accuracy of the exported pruned network, exactly
    with torch.no_grad():
        logits = export_pruned(zm)(data.x_test)
    acc = (logits.argmax(-1) == data.y_test).float().mean().item()
    assert metrics["acc"] == pytest.approx(acc, abs=1e-6)


def test_mc_dropout_on_digits_averages_masks():
    """MC dropout trains; evaluate's mc metrics are those of the softmax averaged over draws."""
    data = zoo.load("digits")
    zm = create_model("lenet300-normal", data=data, guide="mc-dropout", hidden=(100,), seed=0)
    fit(zm, data, num_epochs=20, batch_size=100, lr=3e-3, progress=False, eval_every=0)
    pyro.set_rng_seed(11)
    metrics = zm.evaluate(data, "test")
    # measured: acc 0.95, mc_acc 0.94
    assert metrics["acc"] > 0.8 and metrics["mc_acc"] > 0.8
    x, y = data.x_test, data.y_test
    # replay evaluate's random stream: the mean net first (it samples "obs"), then the draws
    pyro.set_rng_seed(11)
    mean_net_outputs(zm, x)
    draws = predict(zm, x)
    assert draws.shape[0] == zm.config.eval_samples
    probs = draws.softmax(-1).mean(0)
    mc_acc = (probs.argmax(-1) == y).float().mean().item()
    mc_nll = -probs.log().gather(-1, y[:, None]).mean().item()
    assert metrics["mc_acc"] == pytest.approx(mc_acc, abs=1e-6)
    assert metrics["mc_nll"] == pytest.approx(mc_nll, rel=1e-5)
    # every draw has its own masks: no two of 8 draws agree
    draws = predict(zm, x[:50], num_samples=8)
    for i in range(8):
        for j in range(i):
            assert not torch.equal(draws[i], draws[j])


def test_mc_dropout_predictive_mean_is_the_weight_scaling_rule():
    """For a linear net, E over input masks of the logits is the mean net's, x @ M.T + b."""
    data = _tiny((1, 4, 4), n=30, classes=3, n_test=6)
    zm = create_model("lenet300-normal", data=data, guide="mc-dropout", hidden=(), seed=0)
    x = data.x_test
    draws = predict(zm, x, num_samples=500)
    mean = mean_net_outputs(zm, x)
    # the mean net is the unmasked net with M: x @ M.T + b
    m, b = zm.guide.mean_weights()["net.1.weight"], zm.model.net[1].bias
    torch.testing.assert_close(mean, x.flatten(1) @ m.T + b, rtol=1e-5, atol=1e-5)
    # and the average over 500 mask draws is within 5 standard errors of it
    se = draws.std(0) / math.sqrt(draws.shape[0])
    assert ((draws.mean(0) - mean).abs() <= 5 * se).all()


@pytest.mark.parametrize("per", ["layer", "unit"])
def test_variational_dropout_reports_the_learned_rate(per):
    """Kingma's guides: p = alpha / (1 + alpha), capped at max_dropout (alpha <= 1)."""
    data = _tiny((1, 3, 3))
    zm = create_model("lenet300-loguniform", data=data, guide=f"vd-{per}", hidden=(4,), seed=0)
    sites = zm.guide.sites
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for s in sites:
            if per == "layer":
                assert s.log_alpha.shape == ()
            else:
                assert s.log_alpha.shape == (1, s.theta.shape[1])
            # values on both sides of the cap log(0.5 / 0.5) = 0
            s.log_alpha.copy_(torch.empty(s.log_alpha.shape).uniform_(-3, 2, generator=gen))
        sites[0].log_alpha.fill_(math.log(0.3 / 0.7))  # p = 0.3 everywhere in layer 1
    report = layer_report(zm)
    for s, rate in zip(sites, report["dropout_rate"][:-1], strict=True):
        alpha = s.log_alpha.detach().exp()
        p = (alpha / (1 + alpha)).clamp(max=0.5)  # the closed form, capped
        assert rate == pytest.approx(p.mean().item(), rel=1e-6)
        # the posterior is N(theta, alpha theta^2) with the capped alpha (1e-16 jitter)
        q = zm.guide.posterior(s.site).base_dist
        var = alpha.clamp(max=1.0) * s.theta.detach().square()
        torch.testing.assert_close(q.variance, var.expand_as(q.variance), rtol=1e-5, atol=1e-12)
    assert report["dropout_rate"][0] == pytest.approx(0.3, rel=1e-6)
    # alpha <= 1 means log alpha <= 0 < 3: Kingma's guides never prune
    assert (report["sparsity_%"] == 0).all()


def _vd_layer_kl(theta):
    """Per-weight KL the ELBO takes for a vd-layer site with alpha = 0.25 and the given theta."""
    data = _tiny((1, 3, 3))
    zm = create_model("lenet300-loguniform", data=data, guide="vd-layer", hidden=(4,), seed=0)
    site = zm.guide.sites[0]
    with torch.no_grad():
        site.log_alpha.fill_(math.log(0.25))
        site.theta.copy_(theta.expand_as(site.theta))
    # the pair TraceMeanField_ELBO sees: the guide's site and the model's, replayed from it
    guide_trace = poutine.trace(zm.guide).get_trace()
    model_trace = poutine.trace(poutine.replay(zm.model, trace=guide_trace)).get_trace(
        data.x_train[:2]
    )
    q, prior = guide_trace.nodes[site.site]["fn"], model_trace.nodes[site.site]["fn"]
    return kl_divergence(q.base_dist, prior.base_dist).detach()


def test_variational_dropout_kl_is_that_of_its_alpha():
    """Kingma's N(theta, alpha theta^2): the log-uniform KL is eq. 14 at log alpha, any theta.

    Here |theta| >= 0.1, where the 1e-8 jitter on theta^2 moves log alpha by < 1e-6: 1e-5.
    """
    gen = torch.Generator().manual_seed(0)
    theta = (0.1 + torch.rand(4, 9, generator=gen)) * torch.sign(torch.randn(4, 9, generator=gen))
    expected = sparse_vd_kl(torch.tensor(math.log(0.25))).item()
    kl = _vd_layer_kl(theta)
    torch.testing.assert_close(kl, torch.full_like(kl, expected), rtol=1e-5, atol=0)


def test_variational_dropout_kl_is_that_of_its_alpha_for_small_weights():
    """The same for weights near zero, where Kingma's KL still depends on alpha only (1e-3)."""
    theta = torch.tensor([0.0, 1e-6, -1e-5, 1e-4, -1e-3, 1e-2, 0.1, -1.0, 10.0])
    expected = sparse_vd_kl(torch.tensor(math.log(0.25))).item()
    kl = _vd_layer_kl(theta)
    torch.testing.assert_close(kl, torch.full_like(kl, expected), rtol=1e-3, atol=0)


def test_bad_input_gives_clear_errors():
    """Unknown architecture, too small images for LeNet-5, MC dropout with a log-uniform prior."""
    with pytest.raises(ValueError, match="arch must be one of"):
        BNNConfig(arch="nope")
    with pytest.raises(ValueError, match="16x16"):
        create_model("lenet5-loguniform", data=zoo.load("digits"))
    with pytest.raises(ValueError, match="sparse-vd"):
        create_model("lenet300-loguniform", guide="mc-dropout")
    data = _tiny((1, 3, 3))
    zm = create_model(
        "lenet300-normal", data=data, guide="mc-dropout", prior="loguniform", hidden=(4,)
    )
    with pytest.raises(ValueError, match="Normal prior"):
        fit(zm, data, num_epochs=1, batch_size=20, progress=False, eval_every=0)


@pytest.mark.parametrize(
    ("name", "shape"), [("lenet300-loguniform", (1, 8, 8)), ("lenet5-loguniform", (1, 28, 28))]
)
def test_mask_plot_is_written_for_linear_and_conv_first_layers(tmp_path, name, shape):
    """The PNG of the first layer's surviving weights, for both kinds of first layer."""
    from zoo.models.plots.bnn import plot

    data = _tiny(shape)
    zm = create_model(name, data=data, seed=0)
    _set_log_alpha(zm.guide, [0.5] * len(zm.guide.sites))
    (path,) = plot(zm, data, tmp_path)
    assert path.name == "layer1_mask.png" and path.stat().st_size > 1000
